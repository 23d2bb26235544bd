"""Topics people ask the agreement about that it does not cover: price and
refunds, which court or law, a human to talk to. Said so, with where to ask,
rather than the nearest clause's quote (有纠纷在哪里打官司 quoted 6.1's
indemnity; 这个要钱吗 listed the nearest sections).

A topic counts as uncovered only while the version in force says nothing of
it (an amendment that adds a jurisdiction clause is quoted as usual)."""

from __future__ import annotations

import re

from bot.texts import CONTACT, NOT_IN_AGREEMENT_PRICE

#: A question about price, fees or refunds (also the registration form's: 这个要钱吗).
PRICE = re.compile(r"要钱|收费|收钱|多少钱|价格|价钱|报价|免费|付费|年费|月费|会员费|打折|优惠|退款|退费|发票")

#: (question pattern, words whose presence in the agreement means it does cover the topic, reply)
TOPICS = (
    (PRICE, re.compile(r"价格|收费|付费|退款"), NOT_IN_AGREEMENT_PRICE),
    (re.compile(r"法院|管辖|仲裁|打官司|适用.{0,6}法律|(哪里|哪儿|哪个地方).{0,4}(起诉|告)"),
     re.compile(r"法院|管辖|仲裁"),
     "《微拓软件服务使用协议》中没有约定争议由哪个法院管辖、适用哪里的法律或仲裁。" + CONTACT),
    (re.compile(r"^(我要|我想|帮我)?(投诉|转人工|找人工|人工客服|人工|真人|客服电话)$"), None,
     "您可以访问微拓官网的联系信息页，通过上面的联系方式联系微拓的工作人员（协议最后一款）。"),
)


def reply(question: str, agreement_text: str) -> str | None:
    """What to say to ``question`` if it asks about a topic ``agreement_text`` does not cover."""
    asked = re.sub(r"[\s?？!！。.,，~～]+", "", question)
    for pattern, covered, text in TOPICS:
        if pattern.search(asked) and not (covered and covered.search(agreement_text)):
            return text
    return None
