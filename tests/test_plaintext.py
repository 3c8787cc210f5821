"""The text/plain alternative generated from an email's HTML when the author wrote none.

It must read like the HTML looks: no hidden preheader, no CSS, links still usable,
any script unchanged, and it must never stop a send, whatever the HTML.
"""

# ruff: noqa: RUF001 - the test data is meant to hold Arabic, Cyrillic and typographic characters
from __future__ import annotations

import random

import pytest

from orchestrator.rendering import plaintext
from orchestrator.rendering.plaintext import html_to_text

CART_EMAIL = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Your cart is waiting</title>
  <style>
    body { margin: 0; }
    .button { background: #0a7; color: #fff; }
  </style>
</head>
<body style="margin:0">
  <div style="Display: None; max-height:0; overflow:hidden; mso-hide:all">
    Still thinking it over? Your cart is saved. <span>&zwnj;&nbsp;&zwnj;&nbsp;</span>
  </div>
  <!--[if mso]><table><tr><td>Outlook only</td></tr></table><![endif]-->
  <table role="presentation" width="100%" cellpadding="0" cellspacing="0">
    <tr>
      <td><a href="https://shop.example/"><img src="logo.png" alt="Shop Example"></a></td>
      <td align="right"><a href="https://shop.example/view/c42">View in browser</a></td>
    </tr>
    <tr><td colspan="2">&nbsp;</td></tr>
    <tr>
      <td colspan="2">
        <h1>You left something behind, Ana</h1>
        <p>Good news: everything in your cart is
           still available. <a href="https://shop.example/cart?utm_source=email&amp;utm_medium=cart"
           class="button">Return to your cart</a> before it sells out.</p>
        <ul>
          <li><img src="shoes.png" alt="Trail runners, blue"> &times; 1 &mdash; 89,00&nbsp;&euro;
          </li>
          <li><img src="socks.png" alt="Wool socks"> &times; 2 &mdash; 24,00&nbsp;&euro;</li>
          <li><img src="pixel.gif" alt=""><b>Gift wrap</b> &mdash; free</li>
        </ul>
        <table>
          <tr><th align="left">Total</th><td>113,00&nbsp;&euro;</td></tr>
        </table>
        <p>Questions? Write to <a href="mailto:help@shop.example">help@shop.example</a>.</p>
      </td>
    </tr>
    <tr>
      <td colspan="2" class="footer">
        <hr>
        <p>You receive this email because you created an account at shop.example.<br>
           <a href="https://shop.example/u/c42">Unsubscribe</a> &middot;
           <a href="https://shop.example/preferences">https://shop.example/preferences</a></p>
        <p>Shop Example GmbH<br>Musterstra&szlig;e 1<br>10115 Berlin, Germany</p>
        <img src="https://t.shop.example/open.gif" width="1" height="1" alt="">
      </td>
    </tr>
  </table>
</body>
</html>
"""

CART_TEXT = """\
Shop Example (https://shop.example/)  View in browser (https://shop.example/view/c42)

You left something behind, Ana

Good news: everything in your cart is still available. Return to your cart \
(https://shop.example/cart?utm_source=email&utm_medium=cart) before it sells out.

- Trail runners, blue × 1 — 89,00 €
- Wool socks × 2 — 24,00 €
- Gift wrap — free
Total  113,00 €

Questions? Write to help@shop.example.

---

You receive this email because you created an account at shop.example.
Unsubscribe (https://shop.example/u/c42) · https://shop.example/preferences

Shop Example GmbH
Musterstraße 1
10115 Berlin, Germany"""


def test_realistic_cart_email() -> None:
    assert html_to_text(CART_EMAIL) == CART_TEXT


def test_style_script_title_head_and_comments_are_dropped() -> None:
    html = (
        "<html><head><title>Subject</title><meta name=x content=y>"
        "<style>p { color: red }</style></head>"
        "<body><script>var a = '<p>not text</p>';</script>"
        "<!-- a comment --><p>Body</p><style>.late {}</style></body></html>"
    )
    assert html_to_text(html) == "Body"


def test_head_left_open_ends_where_the_body_starts() -> None:
    assert html_to_text("<head><title>Subject</title><div>Body</div>") == "Body"


@pytest.mark.parametrize(
    "style",
    ["display:none", "display: none", "DISPLAY : NONE", "color:red;display:none!important"],
)
def test_hidden_elements_are_dropped_with_their_children(style: str) -> None:
    html = f'<div style="{style}">Preheader <div>nested <a href="https://x.example">link</a>'
    html += '</div><img alt="picture"></div><p>Visible</p>'
    assert html_to_text(html) == "Visible"


def test_display_other_than_none_is_shown() -> None:
    html = '<div style="display:nonsense">a</div><div style="display:block">b</div>'
    assert html_to_text(html) == "a\nb"


def test_hidden_attribute_is_dropped() -> None:
    assert html_to_text("<span hidden>secret</span>shown") == "shown"


def test_entities_are_unescaped() -> None:
    html = "<p>Fish &amp; chips &lt;today&gt; &quot;only&quot; &euro;5&nbsp;&nbsp;&#8211; &#x263A;"
    assert html_to_text(html) == 'Fish & chips <today> "only" €5 – ☺'


def test_nbsp_becomes_a_plain_space_and_spacer_cells_vanish() -> None:
    html = "<table><tr><td>&nbsp;</td></tr><tr><td>Hello&nbsp;Ana</td></tr></table>"
    assert html_to_text(html) == "Hello Ana"
    assert "\xa0" not in html_to_text("a&nbsp;b")


def test_whitespace_collapses_as_in_a_browser() -> None:
    html = "<p>\n   Hello,\t\t<b>Ana</b>\n   <i> and </i>  friends  </p>\n\n\n<p>  Bye  </p>"
    assert html_to_text(html) == "Hello, Ana and friends\n\nBye"


def test_blocks_and_line_breaks() -> None:
    html = "<h2>Title</h2><div>one</div><div>two</div><p>para</p>end<br>next<br><br><br>last"
    assert html_to_text(html) == "Title\n\none\ntwo\n\npara\n\nend\nnext\n\nlast"


def test_lists_and_nested_lists() -> None:
    html = "<p>Items:</p><ul><li>one<ul><li>one.a</li></ul></li><li>two</li></ul><p>After</p>"
    assert html_to_text(html) == "Items:\n\n- one\n  - one.a\n- two\n\nAfter"


def test_table_cells_share_a_line() -> None:
    html = "<table><tr><td>Item</td> <td>Qty</td><th>Price </th></tr><tr><td>Hat</td></tr></table>"
    assert html_to_text(html) == "Item  Qty  Price\nHat"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ('<a href="https://x.example/a">Read more</a>', "Read more (https://x.example/a)"),
        ('<a href="https://x.example/">https://x.example/</a>', "https://x.example/"),
        ('<a href="https://www.x.example/">x.example</a>', "x.example"),
        ('<a href="#top">Back to top</a>', "Back to top"),
        ('<a href="">Nowhere</a>', "Nowhere"),
        ("<a>Anchor</a>", "Anchor"),
        ('<a href="javascript:void(0)">Script</a>', "Script"),
        ('<a href="mailto:help@x.example">help@x.example</a>', "help@x.example"),
        ('<a href="mailto:help@x.example?subject=Hi">Write</a>', "Write (help@x.example)"),
        ('<a href="https://x.example/"><img alt="Logo"></a>', "Logo (https://x.example/)"),
        ('<a href="https://x.example/"><img src="logo.png"></a>', "https://x.example/"),
        ('<a href="https://x.example/">Click </a>here', "Click (https://x.example/) here"),
        ("<p><a href='https://x.example/'><div>Block</div></a>after</p>", "Block (https://x.example/)\nafter"),
    ],
)  # fmt: skip
def test_links(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_images_render_as_alt_text() -> None:
    assert html_to_text('<p>Look: <img src="a.png" alt="A red  hat">!</p>') == "Look: A red hat!"
    assert html_to_text('<p>Pixel<img src="p.gif"><img src="q.gif" alt=""></p>') == "Pixel"


def test_horizontal_rule() -> None:
    assert html_to_text("above<hr>below<hr/>") == "above\n---\nbelow\n---"


def test_preformatted_text_keeps_its_spaces() -> None:
    assert html_to_text("<pre>a  b\n  c</pre>d") == "a  b\n  c\n\nd"


def test_at_most_one_blank_line_and_no_trailing_spaces() -> None:
    html = "<p>a   </p><p></p><p> </p><div><p>b</p></div><br><br><br><br>c   <br>"
    assert html_to_text(html) == "a\n\nb\n\nc"


def test_arabic_right_to_left_text_is_unchanged() -> None:
    html = (
        '<div dir="rtl" lang="ar"><h1>سلتك في انتظارك</h1>'
        '<p>مرحبا أحمد، <a href="https://shop.example/ar/cart">أكمل طلبك</a> الآن.</p></div>'
    )
    assert html_to_text(html) == (
        "سلتك في انتظارك\n\nمرحبا أحمد، أكمل طلبك (https://shop.example/ar/cart) الآن."
    )


def test_cyrillic_and_persian_joiners_are_unchanged() -> None:
    assert html_to_text("<p>Ваша корзина ждёт</p>") == "Ваша корзина ждёт"
    assert html_to_text("<p>می\u200cخواهم</p>") == "می\u200cخواهم"  # ZWNJ is part of the word


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>unclosed <b>bold <i>italic", "unclosed bold italic"),
        ("<div><p>one<p>two</div>three", "one\n\ntwo\n\nthree"),
        ("<table><tr><td>a<td>b<tr><td>c</table>", "a  b\nc"),
        ("<ul><li>a<li>b</ul>", "- a\n- b"),
        ("</div></p>stray end tags</span>", "stray end tags"),
        ('<a href="https://a.example">one<a href="https://b.example">two</a>',
         "one (https://a.example)two (https://b.example)"),
        ('text <div class="cut off', "text"),
        ("text <!-- unclosed comment", "text"),
        ("<![weird[ section ]]>text", "text"),
        ("a < b && c > d", "a < b && c > d"),
        ("<p>x</br>y</p>", "x\ny"),
        ("<div/>self-closed<span/>", "self-closed"),
        ('<div style="display:none"/>still shown', "still shown"),
        ("<style>unclosed style", ""),
        ("", ""),
        ("   \n\t ", ""),
        ("plain text, no tags", "plain text, no tags"),
    ],
)  # fmt: skip
def test_malformed_html(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_never_raises_on_tag_soup() -> None:
    pieces = ["<", ">", "/", "!", "--", "[", "]", "<![", "<!--", "-->", "<?", "&", "#", ";", "=",
              '"', "'", " ", "\n", "x", "a", "p", "li", "td", "tr", "br", "img", "pre", "style",
              "head", "href", "alt", "hidden", "display:none", "&nbsp;", "😀", "ج", "\ud800",
              "\x00", "<a href=", "</a>", "mailto:"]  # fmt: skip
    rng = random.Random(20240601)
    for _ in range(3000):
        html = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
        text = html_to_text(html)
        assert text == text.strip("\n")
        assert "\n\n\n" not in text
        assert all(line == line.rstrip() for line in text.split("\n"))


def test_a_parser_failure_falls_back_to_the_visible_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: object, data: str) -> None:
        raise AssertionError("parser bug")

    monkeypatch.setattr(plaintext._Converter, "feed", broken)
    html = "<head><title>T</title><style>p{}</style></head><p>Hello&nbsp;<b>Ana</b></p>"
    assert html_to_text(html) == "Hello Ana"


def test_deep_nesting_stays_fast() -> None:
    # Unclosed inline tags and nested lists must not make the work (or the output) quadratic.
    assert html_to_text("<span>x" * 20_000) == "x" * 20_000
    text = html_to_text("<ul><li>x" * 5_000)
    assert max(len(line) for line in text.split("\n")) < 20
