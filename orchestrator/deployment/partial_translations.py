"""A translated message must not fall back to the default language in its partials.

`_partials/footer.html` is loaded as `_partials/ar/footer.html` for the Arabic
version of a message, when that file exists; when it does not, the Arabic email
silently gets the English footer (or coupon block). Such a partial is worth a
warning when it has words of its own to translate. A partial of only markup and
variables (a button whose label the message passes in) is language-neutral and
needs no translation.

The rule for "words of its own": what the partial writes itself (the text between
its tags, and quoted strings it prints, like `default("You're receiving…")`, directly
or through a name it set, `{% set note = "Free returns within 30 days" %}{{ note }}`), once
Jinja comments and statements, HTML tags and their attributes, HTML comments,
`<style>`/`<script>` contents and entities (`&nbsp;`) are left out, has a letter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, TemplateSyntaxError, nodes

from ..dsl.problems import Problem
from ..rendering import locales
from ..rendering.catalog import PARTS, Variant

_REFERENCES = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
_MARKUP = re.compile(
    r"<!--.*?-->|<(style|script)\b.*?</\1\s*>|<[^>]*>|&#?\w+;", re.DOTALL | re.IGNORECASE
)
_LETTER = re.compile(r"[^\W\d_]")
_PARSER = Environment()


@dataclass(frozen=True)
class _Use:
    """A shared template a message part uses, and the line of the part that leads to it."""

    name: str  # _partials/footer.html
    file: Path  # the file that will be loaded
    part: Path  # the message's own file
    line: int  # where the part includes, imports or extends (the first step to it)
    through: tuple[str, ...]  # shared templates in between (_layouts/email.html)


def check_partial_translations(
    variant: Variant, channel: str, default_locale: str, seen: set[tuple[str, str]]
) -> list[Problem]:
    """A warning for each partial the `variant` (a translation) uses on `channel` that
    has words of its own and no translation along the variant's locale chain.

    `seen` holds (variant folder, partial) pairs already reported: one warning each.
    """
    tag = variant.locale
    default = locales.parse(default_locale)
    own = locales.parse(tag)
    if tag is None or own is None or default is None or own.language == default.language:
        return []
    translated = [
        t for t in locales.chain(tag, default_locale) if t.split("_")[0] != default.language
    ]
    problems = []
    for part in PARTS[channel]:
        if not variant.has(channel, part):
            continue
        start = variant.folder / f"{channel}.{part}"
        for use in _uses(variant.templates_dir, start, translated):
            key = (str(variant.folder), use.name)
            if use.file.parent.relative_to(variant.templates_dir).as_posix() != _folder(use.name):
                continue  # a translation was found
            if key in seen or not has_words(use.file):
                continue
            seen.add(key)
            problems.append(_warning(variant, use, tag, default.english_name or default_locale))
    return problems


def used_templates(variant: Variant, channel: str, part: str, default_locale: str) -> list[Path]:
    """The shared layouts and partials a part of `variant` uses, directly or through
    others, as they resolve for its locale."""
    tags = locales.chain(variant.locale or default_locale, default_locale)
    start = variant.folder / f"{channel}.{part}"
    return [use.file for use in _uses(variant.templates_dir, start, tags)]


def _warning(variant: Variant, use: _Use, tag: str, language: str) -> Problem:
    label = tag.replace("_", "-")
    through = f" (through {', '.join(use.through)})" if use.through else ""
    folder, _, name = use.name.rpartition("/")
    message = (
        f"the {label} version of {variant.message!r} uses {use.name}{through}, which has no "
        f"{label} translation: {label} contacts would read its {language} text; add "
        f"{folder}/{label}/{name}"
    )
    return Problem(str(use.part), use.line, 1, message, "warning")


def _folder(name: str) -> str:
    return name.rpartition("/")[0]


def _uses(templates_dir: Path, start: Path, tags: list[str]) -> Iterator[_Use]:
    """Every shared template `start` uses, directly or through others, as it resolves."""
    seen: set[str] = set()
    stack: list[tuple[Path, int | None, tuple[str, ...]]] = [(start, None, ())]
    while stack:
        file, line, through = stack.pop()
        for name, at in _references(file):
            if not _folder(name).startswith("_") or name in seen:
                continue
            seen.add(name)
            resolved = _resolve(templates_dir, name, tags)
            if resolved is None:
                continue  # a missing file is the renderer's to report
            first = line if line is not None else at
            yield _Use(name, resolved, start, first, through)
            stack.append((resolved, first, (*through, name)))


def _resolve(templates_dir: Path, name: str, tags: list[str]) -> Path | None:
    """The file LocalizedLoader would load for `name` with these (translated) tags."""
    folder, _, base = name.rpartition("/")
    for tag in tags:
        for spelled in dict.fromkeys((tag, tag.replace("_", "-"))):
            candidate = templates_dir / folder / spelled / base
            if candidate.is_file():
                return candidate
    fallback = templates_dir / name
    return fallback if fallback.is_file() else None


def _references(file: Path) -> Iterator[tuple[str, int]]:
    """(name, line) of each constant include, import and extends of a template file."""
    tree = _parse(file)
    if tree is None:
        return
    for node in tree.find_all(_REFERENCES):
        target = node.template
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            yield target.value, node.lineno


def _parse(file: Path) -> nodes.Template | None:
    try:
        return _PARSER.parse(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, TemplateSyntaxError):
        return None  # the renderer reports it


def has_words(file: Path) -> bool:
    """Whether a template writes words of its own (see the module's rule)."""
    tree = _parse(file)
    if tree is None:
        return False
    printed = _Printed(_assignments(tree))
    pieces: list[str] = []
    for output in tree.find_all(nodes.Output):
        for child in output.nodes:
            if isinstance(child, nodes.TemplateData):
                pieces.append(child.data)
            else:
                pieces.append(" ".join(printed(child)) or "\x00")
    text = _MARKUP.sub(" ", "".join(pieces))
    return bool(_LETTER.search(text))


def _assignments(tree: nodes.Template) -> dict[str, list[nodes.Expr]]:
    """What each name may hold, as the template sets it: `{% set note = "Free returns" %}`,
    `{% with label="Shop now" %}`, a macro's defaults, a loop over a literal list."""
    found: dict[str, list[nodes.Expr]] = {}

    def bind(target: nodes.Node, value: nodes.Expr) -> None:
        if isinstance(target, nodes.Name):
            found.setdefault(target.name, []).append(value)

    for node in tree.find_all(nodes.Assign):
        bind(node.target, node.node)
    for node in tree.find_all(nodes.With):
        for target, value in zip(node.targets, node.values, strict=False):
            bind(target, value)
    for node in tree.find_all(nodes.Macro):
        with_defaults = node.args[len(node.args) - len(node.defaults) :]
        for arg, default in zip(with_defaults, node.defaults, strict=True):
            bind(arg, default)
    for node in tree.find_all(nodes.For):
        if isinstance(node.iter, nodes.List | nodes.Tuple):
            for item in node.iter.items:
                bind(node.target, item)
    return found


class _Printed:
    """The quoted strings an output expression may print as they are: written in it, or
    held by a name it prints (`{% set note = "Free returns within 30 days" %}{{ note }}`)."""

    def __init__(self, assigned: dict[str, list[nodes.Expr]]) -> None:
        self.assigned = assigned
        self.following: set[str] = set()  # names being followed (`{% set a = a ~ "x" %}`)

    def __call__(self, node: nodes.Node) -> list[str]:
        match node:
            case nodes.Const(value=str() as value):
                return [value]
            case nodes.Name(name=name) if name in self.assigned and name not in self.following:
                self.following.add(name)
                try:
                    return [s for value in self.assigned[name] for s in self(value)]
                finally:
                    self.following.discard(name)
            case nodes.CondExpr():
                return [*self(node.expr1), *(self(node.expr2) if node.expr2 else [])]
            case nodes.Concat():
                return [s for child in node.nodes for s in self(child)]
            case nodes.Filter(name="default" | "d"):
                inner = self(node.node) if node.node is not None else []
                return [*inner, *(s for arg in node.args[:1] for s in self(arg))]
            case nodes.Filter(name="plural"):  # plural(one="item", other="items")
                inner = self(node.node) if node.node is not None else []
                return [*inner, *(s for kw in node.kwargs for s in self(kw.value))]
            case nodes.Filter() if node.node is not None:
                return self(node.node)
            case nodes.Or():
                return [*self(node.left), *self(node.right)]
        return []
