"""The dashboard in English and Russian: the interface's words, numbers and verdicts.

Templates write English (`{{ _("Journeys") }}`); `RU` gives each its Russian. A test
checks that every string the templates and pages use has a translation, so a new
label cannot ship in English only. Fixed words of the reporting model (statuses,
channels, reasons) go through `words`; what the model says in sentences (the story's
lines, a step's description) stays in the CLI's English, the same text everywhere.

Content (names, subjects, message bodies) is shown with `dir="auto"`: an Arabic subject
reads right to left inside the left-to-right page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request

LANGUAGES = {"en": "English", "ru": "Русский"}
COOKIE = "journeys_lang"

RU: dict[str, str] = {
    "95 % interval": "95 % интервал",
    "A/B split": "A/B-тест",
    "In it now": "Сейчас в сценарии",
    "current": "текущая",
    "runs in flight": "запусков в работе",
    "Admin key": "Ключ администратора",
    "Against the first variant": "Против первого варианта",
    "Also known as": "Другие идентификаторы",
    "Back to the journeys": "К сценариям",
    "Campaign": "Кампания",
    "Channel": "Канал",
    "Check": "Проверка",
    "Clear": "Сбросить",
    "Code": "Код",
    "Consent": "Согласия",
    "Contact": "Контакт",
    "Content": "Содержание",
    "Content as rendered": "Содержание, как отправлено",
    "Conversion rate": "Конверсия",
    "Converted": "Достигли цели",
    "Coupons": "Купоны",
    "Created": "Создано",
    "Database": "База данных",
    "Deferred": "Отложено",
    "Deferred messages": "Отложенные сообщения",
    "Deferred sends": "Отложенные отправки",
    "Detail": "Подробности",
    "Diagram of": "Схема сценария",
    "Drawn from the deployed journey: each step with how many reached it and how many wait "
    "there now; each edge with how many took it.": "Построена по развёрнутому сценарию: у "
    "каждого шага — сколько до него дошли и сколько ждут на нём сейчас; у каждой стрелки — "
    "сколько прошли по ней.",
    "Email": "Эл. почта",
    "Entered": "Вошли",
    "Entered in": "Вошедшие за",
    "Entries per day": "Входы по дням",
    "Erase this contact": "Удалить контакт",
    "Erased": "Удалено",
    "Erasing stops this contact's journeys and deletes their personal data. It cannot be "
    "undone.": "Удаление останавливает сценарии контакта и стирает его персональные данные. "
    "Отменить нельзя.",
    "Event routing": "Маршрутизация событий",
    "Every deployed journey; numbers are about the runs that entered in the period.": "Все "
    "развёрнутые сценарии; числа — о запусках, вошедших за период.",
    "Exits": "Выходы",
    "Expires": "Истекает",
    "Export everything stored about this contact (JSON)": "Выгрузить всё, что хранится о "
    "контакте (JSON)",
    "Failed messages": "Неудачные отправки",
    "First seen": "Впервые замечен",
    "From": "С",
    "Funnel": "Воронка",
    "Funnel from entry to goal": "Воронка от входа до цели",
    "Health": "Состояние",
    "Issued": "Выдан",
    "Journey": "Сценарий",
    "Journeys": "Сценарии",
    "Journeys dashboard": "Панель сценариев",
    "Journeys entered": "Сценарии контакта",
    "Kind": "Вид",
    "Language": "Язык",
    "Last simulation": "Последняя симуляция",
    "Log in": "Войти",
    "Log out": "Выйти",
    "Loyalty points": "Баллы лояльности",
    "Marketing": "Маркетинг",
    "Median time to convert": "Медиана времени до конверсии",
    "Message": "Сообщение",
    "Messages": "Сообщения",
    "Newest events shown": "Показаны последние события",
    "No journey has been deployed yet: journeys dev deploys the files in journeys/.": "Ни "
    "один сценарий ещё не развёрнут: journeys dev развёртывает файлы из journeys/.",
    "No message matches.": "Подходящих сообщений нет.",
    "No simulation of this journey yet:": "Симуляций этого сценария ещё не было:",
    "None yet.": "Пока нет.",
    "Not entered": "Не вошли",
    "Not erased: the id typed does not match this contact's id.": "Не удалено: введённый "
    "идентификатор не совпадает с идентификатором контакта.",
    "Not sent, why": "Не отправлено, почему",
    "Nothing was rendered: the message stopped before rendering.": "Письмо не "
    "формировалось: сообщение остановлено раньше.",
    "Numbers": "Показатели",
    "Older messages": "Более ранние сообщения",
    "Open": "Открыть",
    "Open without a login to this machine only: journeys dev": "Открыто без входа только "
    "для этой машины: journeys dev",
    "Outcomes": "Исходы",
    "Part": "Компонент",
    "Paste an admin key (journeys keys create NAME --admin). It is checked, never stored in "
    "the browser: the session lasts 12 hours, or until the key is revoked.": "Вставьте ключ "
    "администратора (journeys keys create ИМЯ --admin). Он проверяется и не хранится в "
    "браузере: сеанс длится 12 часов или до отзыва ключа.",
    "Period": "Период",
    "Personal data": "Персональные данные",
    "Phone": "Телефон",
    "Plain-text part": "Текстовая часть",
    "Profile": "Профиль",
    "Provider calls": "Обращения к провайдеру",
    "Provider errors, last hour": "Ошибки провайдеров за час",
    "Push devices": "Устройства для push",
    "Reached": "Дошли",
    "Recipient": "Получатель",
    "Redeemed": "Погашен",
    "Revenue": "Выручка",
    "Revenue per entrant": "Выручка на вошедшего",
    "Search": "Найти",
    "Search messages": "Поиск сообщений",
    "Sections": "Разделы",
    "Service messages": "Сервисные",
    "Show": "Показать",
    "Skip to content": "К содержимому",
    "Status": "Статус",
    "Status timeline": "История статусов",
    "Status now": "Статус сейчас",
    "Step": "Шаг",
    "Step now": "Текущий шаг",
    "Steps": "Шаги",
    "Story: what happened and why": "История: что произошло и почему",
    "Subject": "Тема",
    "Suppressed addresses": "Заблокированные адреса",
    "Template": "Шаблон",
    "That is not a live admin key.": "Это не действующий ключ администратора.",
    "The email as sent (images and links off)": "Письмо, как отправлено (картинки и ссылки "
    "отключены)",
    "The form came from another site.": "Форма пришла с другого сайта.",
    "The form expired: log in again (cookies must be allowed).": "Форма устарела: войдите "
    "снова (cookie должны быть разрешены).",
    "The journey": "Сценарий",
    "The same checks as GET /health; read at": "Те же проверки, что GET /health; прочитано",
    "The same story as journeys explain: events, each journey's decisions with their "
    "reasons, and messages.": "Та же история, что у journeys explain: события, решения "
    "каждого сценария с причинами и сообщения.",
    "Time zone": "Часовой пояс",
    "Title": "Заголовок",
    "To": "По",
    "Traits": "Атрибуты",
    "Type the contact id to confirm": "Для подтверждения введите идентификатор контакта",
    "Value": "Скидка",
    "Variant": "Вариант",
    "Version": "Версия",
    "Versions": "Версии",
    "Waiting now": "Ждут сейчас",
    "Weight": "Вес",
    "What it does": "Что делает",
    "When": "Когда",
    "all": "все",
    "all time": "всё время",
    "any": "любой",
    "backlog": "очередь",
    "contact id, alias or email": "id, псевдоним, email",
    "contacts over": "контактов за",
    "control": "контроль",
    "days": "дн.",
    "deployed": "развёрнута",
    "development": "разработка",
    "difference": "разница",
    "invariants": "инварианты",
    "journeys stopped": "остановлено сценариев",
    "lag": "задержка",
    "last": "последняя",
    "limit": "предел",
    "message": "сообщение",
    "no": "нет",
    "no change in the steps": "шаги не менялись",
    "of": "из",
    "of entered": "от вошедших",
    "retired": "снята",
    "routed": "передано",
    "sent": "отправлено",
    "step": "шаг",
    "the last 30 days": "последние 30 дней",
    "the last 7 days": "последние 7 дней",
    "the last 90 days": "последние 90 дней",
    "until": "до",
    "yes": "да",
    "The newest part is shown:": "Показана последняя часть:",
    "lines": "строк",
    "journeys": "сценариев",
    "Show everything": "Показать всё",
    "An unnamed step: its place in the file. Give it an id: to name it.": "Шаг без имени: "
    "его место в файле. Дайте ему id:, чтобы назвать.",
    "This contact's messages": "Сообщения контакта",
    "Nobody entered in this period; in all:": "За этот период никто не вошёл; всего:",
    "Show all time": "Показать за всё время",
    "About the runs that entered in the period. Converted: the goal reached within its "
    "window after entry, also after the run ended, so it may exceed the exits by the goal "
    "event.": "О запусках, вошедших за период. Достигли цели: цель достигнута в её окне после "
    "входа, в том числе после окончания сценария, поэтому их может быть больше, чем выходов "
    "по событию цели.",
    "Orders in the simulation": "Заказы в симуляции",
    "entry events": "при входе",
    "would have bought anyway": "купили бы и так",
    "after a message": "после сообщения",
    "Images and remote content are off in this preview: loading them would count as an "
    "open.": "Картинки и внешнее содержимое в предпросмотре отключены: их загрузка считалась "
    "бы открытием.",
    "or from": "или с",
    "yes (not asked)": "да (не спрашивали)",
    "Consent not asked is what the send policy allows without an explicit opt-in "
    "(JOURNEYS_MARKETING_CONSENT).": "«Не спрашивали» — то, что политика отправки разрешает "
    "без явного согласия (JOURNEYS_MARKETING_CONSENT).",
    # problem pages
    "Bad filter": "Неверный фильтр",
    "Bad page": "Неверная страница",
    "Bad period": "Неверный период",
    "Bad date": "Неверная дата",
    "Bad version": "Неверная версия",
    "No contact id": "Нет идентификатора контакта",
    "No such contact": "Контакт не найден",
    "No such journey": "Сценарий не найден",
    "No such message": "Сообщение не найдено",
    "No such simulation": "Симуляция не найдена",
    "Not erased yet": "Пока не удалено",
    "Not possible": "Невозможно",
    "Form refused": "Форма отклонена",
}

# The reporting model's fixed words: statuses, channels, kinds, reasons.
WORDS_RU: dict[str, str] = {
    "active": "активен",
    "retired": "снят",
    "completed": "завершено",
    "exited": "досрочный выход",
    "converted": "конверсия",
    "failed": "ошибка",
    "skipped": "пропущено",
    "ok": "в порядке",
    "degraded": "есть проблемы",
    "error": "ошибка",
    "lagging": "отстаёт",
    "not configured": "не настроен",
    "email": "эл. почта",
    "sms": "SMS",
    "push": "push",
    "pending": "ожидает",
    "queued": "в очереди",
    "sending": "отправляется",
    "sent": "отправлено",
    "delivered": "доставлено",
    "opened": "открыто",
    "clicked": "клик",
    "replied": "ответ",
    "bounced": "не доставлено",
    "unsubscribed": "отписка",
    "deferred": "отложено",
    "suppressed": "не отправлено",
    "unknown": "неизвестно",
    "marketing": "маркетинг",
    "transactional": "сервисное",
    "event": "событие",
    "journey": "сценарий",
    "message": "сообщение",
    "points": "баллы",
    "coupon": "купон",
    "consent": "нет согласия",
    "suppression_list": "адрес заблокирован",
    "frequency_cap": "лимит частоты",
    "quiet_hours": "тихие часы",
    "deferred_too_often": "слишком часто откладывалось",
    "template": "шаблон",
    "provider": "провайдер",
    "no_address": "нет адреса",
    "no_channel": "нет канала",
    "contact_erased": "контакт удалён",
    "delivery": "доставка",
    "re_entry": "повторный вход",
    "entry_if": "условие входа",
    "erased": "удалён",
    "complained": "жалоба",
    "invalid": "неверный адрес",
    "dead_token": "устаревший токен",
}


def language(request: Request) -> str:
    """`?lang=`, then the cookie it sets, then the browser's Accept-Language, then English."""
    asked = request.query_params.get("lang") or request.cookies.get(COOKIE)
    if asked in LANGUAGES:
        return str(asked)
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "en"


def translator(lang: str) -> Callable[[str], str]:
    if lang == "ru":
        return lambda text: RU.get(text, text)
    return lambda text: text


def words(text: str | None, lang: str) -> str:
    """A fixed word of the model (`failed`, `quiet_hours`, `suppressed: consent`)."""
    if not text:
        return ""
    if lang != "ru":
        return text.replace("_", " ")
    return ": ".join(WORDS_RU.get(p.strip(), p.strip().replace("_", " ")) for p in text.split(":"))


def number(value: Any, lang: str) -> str:
    if value is None:
        return "—"
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
    return text.replace(",", "\u202f").replace(".", ",") if lang == "ru" else text


def percent(ratio: float | None, lang: str) -> str:
    """As `journeys stats` prints it: one decimal and a spaced sign ("12.5 %")."""
    if ratio is None:
        return "—"
    text = f"{ratio * 100:.1f} %"
    return text.replace(".", ",") if lang == "ru" else text


def points(difference: float, lang: str) -> str:
    """A difference of two rates, in percentage points, signed."""
    text = f"{difference * 100:+.1f} pp"
    return text.replace(".", ",").replace("pp", "п.п.") if lang == "ru" else text


def money(value: float | None, lang: str) -> str:
    return "—" if value is None else number(float(value), lang)


def verdict(comparison: Any, lang: str) -> str:
    """The split's verdict (`stats._compare`) in the page's language."""
    text: str = comparison.verdict
    if lang != "ru":
        return text
    return _verdict_ru(text)


def _verdict_ru(text: str) -> str:
    parts = []
    for clause in text.split("; "):
        if clause == "not enough data yet":
            parts.append("пока недостаточно данных")
        elif " converts better than " in clause:
            better, rest = clause.split(" converts better than ", 1)
            worse = rest.removesuffix(", 95 % sure")
            parts.append(f"{better} конвертирует лучше, чем {worse}, с уверенностью 95 %")
        elif clause.startswith("no clear difference in conversion between "):
            pair = clause.removeprefix("no clear difference in conversion between ")
            a, _, b = pair.removesuffix(" yet").partition(" and ")
            parts.append(f"явной разницы в конверсии между {a} и {b} пока нет")
        elif " brings more revenue per entrant, 95 % sure" in clause:
            more = clause.removesuffix(" brings more revenue per entrant, 95 % sure")
            parts.append(f"{more} приносит больше выручки на вошедшего, с уверенностью 95 %")
        else:
            parts.append(clause)
    return "; ".join(parts)
