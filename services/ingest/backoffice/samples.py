"""Sample script, binding and table made on the very first start, so a new system scores calls.

They are made once: an admin who deletes them does not get them back on restart.
Phrases are Russian with English variants, for calls in either language.
"""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.ingest.backoffice import catalog
from shared.events import utcnow
from shared.mongo import SETTINGS, Document
from shared.scripts import Binding, Table, Template
from shared.url_policy import UrlPolicy

SAMPLES_MARK = "samples"
# The demo CRM of `make run`; elsewhere the URL policy refuses loopback, so these sample
# deliveries fail at once instead of going anywhere.
SAMPLE_WEBHOOK_BASE = "http://127.0.0.1:8090/hooks"
SAMPLE_POLICY = UrlPolicy(allow_loopback=True)  # what the samples are saved under

SAMPLE_TEMPLATE = Template.model_validate(
    {
        "name": "Первичный звонок (пример)",
        "stages": [
            {
                "name": "Приветствие",
                "threshold": 60,
                "criteria": (
                    "Представился и назвал компанию (60%), уточнил, удобно ли говорить (40%)"
                ),
                "points": [
                    {
                        "text": "Представился и назвал компанию",
                        "weight": 60,
                        "within_s": 30,
                        "phrases": ["меня зовут", "компания", "my name is", "company"],
                    },
                    {
                        "text": "Уточнил, удобно ли говорить",
                        "weight": 40,
                        "phrases": [
                            "удобно говорить",
                            "есть минута",
                            "convenient to talk",
                            "good time to talk",
                        ],
                    },
                ],
            },
            {
                "name": "Выявление потребностей",
                "threshold": 50,
                "criteria": "Задал вопросы о задаче и бюджете клиента",
                "points": [
                    {
                        "text": "Спросил о задаче",
                        "weight": 50,
                        "phrases": [
                            "какая задача",
                            "что вы ищете",
                            "what are you looking for",
                            "what do you need",
                        ],
                    },
                    {
                        "text": "Спросил о бюджете",
                        "weight": 50,
                        "phrases": ["бюджет", "сколько готовы", "budget", "how much"],
                    },
                ],
            },
            {
                "name": "Презентация",
                "threshold": 50,
                "criteria": "Рассказал о продукте и выгоде для клиента",
                "points": [
                    {
                        "text": "Рассказал о предложении",
                        "weight": 100,
                        "phrases": ["мы предлагаем", "наше предложение", "we offer", "our product"],
                    },
                ],
            },
            {
                "name": "Работа с возражениями",
                "threshold": 100,
                "criteria": "Не спорил с клиентом и не давил",
                "ignore_when": "Звонок короче 1 минуты",
                "points": [
                    {
                        "text": "Не спорил с клиентом",
                        "weight": 100,
                        "forbidden": True,
                        "phrases": [
                            "вы не правы",
                            "это не моя проблема",
                            "you are wrong",
                            "not my problem",
                        ],
                    },
                ],
            },
            {
                "name": "Следующий шаг",
                "threshold": 50,
                "criteria": "Договорился о конкретной дате следующего контакта",
                "points": [
                    {
                        "text": "Договорился о следующем контакте",
                        "weight": 100,
                        "phrases": [
                            "перезвоню",
                            "созвонимся",
                            "встретимся",
                            "call you back",
                            "talk on",
                            "meet on",
                        ],
                    },
                ],
            },
        ],
    }
)

SAMPLE_TABLE = Table.model_validate(
    {
        "name": "Сделки (пример)",
        "webhook": {"url": f"{SAMPLE_WEBHOOK_BASE}/analytics"},
        "fields": [
            {
                "key": "budget",
                "name": "Бюджет",
                "type": "number",
                "method": "regex",
                # «500 тысяч», «1,5 миллиона», "500,000": the number with its scale word.
                "pattern": (
                    r"(?:бюджет|budget)\D{0,20}"
                    r"(\d[\d\s,.]*(?:тысяч\w*|миллион\w*|thousand|million)?)"
                ),
                "speaker": "any",
            },
            {
                "key": "competitor",
                "name": "Упомянут конкурент",
                "type": "boolean",
                "method": "phrases",
                "phrases": ["конкурент", "у других", "competitor"],
            },
            {
                "key": "next_step_date",
                "name": "Дата следующего шага",
                "type": "date",
                "method": "regex",
                "pattern": r"(\d{1,2}\.\d{1,2}\.\d{2,4})",
            },
            {
                "key": "talk_ratio",
                "name": "Доля речи менеджера",
                "type": "number",
                "method": "metric",
                "metric": "talk_ratio",
            },
        ],
    }
)


async def ensure_samples(db: AsyncDatabase[Document]) -> bool:
    """Create the samples if this database never had them; True when created now."""
    try:
        await db[SETTINGS].insert_one({"_id": SAMPLES_MARK, "created_at": utcnow()})
    except DuplicateKeyError:
        return False
    template = await catalog.create(db, catalog.TEMPLATE, SAMPLE_TEMPLATE, policy=SAMPLE_POLICY)
    binding = Binding.model_validate(
        {"template_id": template["_id"], "webhook": {"url": f"{SAMPLE_WEBHOOK_BASE}/checklist"}}
    )
    await catalog.create(db, catalog.BINDING, binding, policy=SAMPLE_POLICY)
    await catalog.create(db, catalog.TABLE, SAMPLE_TABLE, policy=SAMPLE_POLICY)
    return True
