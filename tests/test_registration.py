"""Merchant registration and the account's life, through /wechat."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bot import texts
from bot.merchants import AccountRefused
from bot.validation import Invalid, credit_code_check_char, parse_contact_name, parse_credit_code, parse_phone
from storage.redis_store import key
from tests.test_cli import run_cli
from tests.wx import event_xml, message_xml, text_xml

CODE = "91450103MA5L2K3R0W"


async def chat(svc, openid: str, *messages: str) -> list[str]:
    return [await svc.wechat.ask(openid, m) for m in messages]


def unnumbered(prompt: str) -> str:
    """A step's prompt as asked when an item is changed from the summary (no "第 N 步：")."""
    return re.sub(r"^第 \d+ 步：", "", prompt)


async def accepted(svc, openid: str) -> None:
    await svc.wechat.ask(openid, "同意")


ENTERPRISE = ["注册", "企业", "南宁市测试贸易有限公司", CODE, "王五", "13812345678", "wangwu@example.com"]


async def register_enterprise(svc, openid: str) -> list[str]:
    await accepted(svc, openid)
    return await chat(svc, openid, *ENTERPRISE, "确认")


# -- whole dialogs ---------------------------------------------------------------------


async def test_enterprise_registration(service):
    replies = await register_enterprise(service, "o-ent")
    assert replies[0].startswith(texts.PROMPT_ENTITY_TYPE)
    assert "营业执照" in replies[1] and "第 2 步" in replies[1]
    assert replies[2].startswith(texts.PROMPT_CREDIT_CODE)
    summary = replies[-2]
    for expected in ("主体类型：企业", "名称：南宁市测试贸易有限公司", f"统一社会信用代码：{CODE}", "联系人：王五", "手机号码：13812345678", "邮箱：wangwu@example.com"):
        assert expected in summary
    assert "已提交" in replies[-1] and "待审核" in replies[-1]

    merchant = await service.runtime.merchants.get("o-ent")
    assert merchant.profile() == {
        "entity_type": "enterprise", "entity_name": "南宁市测试贸易有限公司", "credit_code": CODE,
        "contact_name": "王五", "phone": "13812345678", "email": "wangwu@example.com",
    }
    assert merchant.status == "pending_review"
    [entry] = await service.runtime.merchants.repo.history("o-ent")
    assert (entry.status, entry.by) == ("pending_review", "user")
    assert await service.runtime.redis.get(key("dialog", "o-ent")) is None
    assert "已注册" in await service.wechat.ask("o-ent", "注册")


async def test_individual_registration_with_skipped_email(service):
    await accepted(service, "o-ind")
    replies = await chat(service, "o-ind", "注册", "个人", "张三", "是", "张三", "+86 139-1234-5678", "跳过", "确认")
    assert "真实姓名" in replies[1]
    assert replies[2].startswith(texts.PROMPT_ADULT)
    assert "邮箱：（未填写）" in replies[-2] and "已确认年满 18 周岁" in replies[-2]
    merchant = await service.runtime.merchants.get("o-ind")
    assert (merchant.entity_type, merchant.phone, merchant.email, merchant.credit_code) == ("individual", "13912345678", None, None)


async def test_under_18_ends_politely_without_saving(service):
    await accepted(service, "o-kid")
    replies = await chat(service, "o-kid", "注册", "个人", "小明", "否")
    assert replies[-1] == texts.UNDERAGE
    assert await service.runtime.merchants.get("o-kid") is None
    assert "第 " not in await service.wechat.ask("o-kid", "小明")  # the dialog is over: no step prompt
    assert await service.runtime.services.dialogs.load("o-kid") is None


# -- validation: a specific message and the same step again ------------------------------------


@pytest.mark.parametrize(
    "steps, bad, needle, prompt",
    [
        ([], "公司吧", "“个人”或“企业”", texts.PROMPT_ENTITY_TYPE),
        (["企业"], "微拓", "4 到 100 个字", "第 2 步"),
        (["企业"], "12345678", "需要包含文字", "第 2 步"),
        (["个人"], "张", "2 到 30 个字", "第 2 步"),
        (["企业", "南宁市测试贸易有限公司"], "9135010", "应为 18 位", texts.PROMPT_CREDIT_CODE),
        (["企业", "南宁市测试贸易有限公司"], "91350100M000100I43", "不含 I、O、Z、S、V", texts.PROMPT_CREDIT_CODE),
        (["企业", "南宁市测试贸易有限公司"], "91350100M000100Y44", "校验位不正确", texts.PROMPT_CREDIT_CODE),
        (["个人", "张三"], "也许", "“是”或“否”", texts.PROMPT_ADULT),
        (["个人", "张三", "是"], "王", "联系人姓名应为", texts.PROMPT_CONTACT_NAME),
        (["个人", "张三", "是", "张三"], "12345678901", "11 位中国大陆手机号码", texts.PROMPT_PHONE),
        (["个人", "张三", "是", "张三"], "1381234567", "例如：13812345678", texts.PROMPT_PHONE),
        (["个人", "张三", "是", "张三", "13812345678"], "not-an-email", "邮箱格式不正确", texts.PROMPT_EMAIL),
    ],
)
async def test_wrong_answers_get_specific_reprompts(service, steps, bad, needle, prompt):
    openid = "o-val"
    await accepted(service, openid)
    await chat(service, openid, "注册", *steps)
    reply = await service.wechat.ask(openid, bad)
    assert needle in reply, reply
    assert prompt in reply
    state = (await service.runtime.services.dialogs.load(openid)).name
    assert state.startswith("registration:")
    assert await service.runtime.merchants.get(openid) is None


def test_credit_code_and_phone_rules():
    assert parse_credit_code(" 91450103ma5l2k3r0w ") == CODE
    assert credit_code_check_char(CODE[:17]) == CODE[17]
    # A right check character is not enough: no authority 0, and the division code is digits.
    for bad in ("0" * 18, "9A" + "X" * 6 + "0" * 9):
        bad = bad[:17] + credit_code_check_char(bad[:17])
        with pytest.raises(Invalid) as refused:
            parse_credit_code(bad)
        assert "登记管理部门" in refused.value.message
    assert parse_phone("１３８ １２３４ ５６７８") == "13812345678"
    assert parse_phone("0086 138 1234 5678") == parse_phone("+86 138-1234-5678") == "13812345678"  # 0086 was 15 digits
    for bad, why in (("12812345678", "不能以 12 开头"), ("138123456789", "您输入了 12 位"), ("138", "您输入了 3 位"),
                     ("abc@", "只能包含数字"), ("13٨١٢٣٤٥٦٧٨", "只能包含数字")):  # Arabic-Indic digits were stored
        with pytest.raises(Invalid) as refused:
            parse_phone(bad)
        assert refused.value.message.startswith("手机号码") and why in refused.value.message
    # A landline is said to be one (it was "不能以 07 开头", which read as a rule about area codes).
    for landline in ("0771-5512345", "010 8888 6666", "(0771)55123456"):
        with pytest.raises(Invalid) as refused:
            parse_phone(landline)
        assert "固定电话" in refused.value.message and "不能以 0" not in refused.value.message, refused.value.message


def test_a_question_or_a_credit_code_is_no_name():
    # At the name step, a question was stored as the name (“当前填写：我上传的图片版权归谁?”),
    # and a credit code sent again as the contact person.
    from bot.validation import parse_contact_name, parse_entity_name

    for bad, why in (("我上传的图片版权归谁？", "问题"), ("你们能用我的logo做广告吗", "问题"), (CODE, "统一社会信用代码"),
                     ("张3", "数字")):
        with pytest.raises(Invalid) as refused:
            parse_contact_name(bad)
        assert why in refused.value.message and refused.value.field == "contact_name"
    with pytest.raises(Invalid) as refused:
        parse_entity_name("你们能用我的logo做广告吗", "enterprise")
    assert "问题" in refused.value.message
    assert parse_entity_name("58同城南宁分公司", "enterprise") == "58同城南宁分公司"
    assert parse_entity_name("欧阳 娜娜", "individual") == "欧阳 娜娜"
    assert parse_contact_name("John Smith") == "John Smith"


def test_names_keep_the_licences_full_width_brackets_and_a_type_word_is_no_name():
    from bot.validation import parse_contact_name, parse_entity_name

    # NFKC turned （新） into (新): no longer the name on the business licence.
    for typed in ("南宁市微拓软件服务有限公司（新）", "南宁市微拓软件服务有限公司(新)", "南宁市微拓软件服务有限公司（新)"):
        assert parse_entity_name(typed, "enterprise") == "南宁市微拓软件服务有限公司（新）"
    assert parse_entity_name("ACME (China) Ltd", "enterprise") == "ACME (China) Ltd"
    for word in ("个人", "企业", "公司"):  # typed again after 上一步 back to the name step
        with pytest.raises(Invalid) as refused:
            parse_entity_name(word, "individual")
        assert "主体类型" in refused.value.message
    with pytest.raises(Invalid):
        parse_contact_name("个人")


def test_a_sentence_or_a_traditional_command_word_is_no_name():
    # 我要改邮箱 and 我不想填这个了啊 were stored as names, and Traditional 企業,
    # 跳過, 服務協議 passed where their Simplified forms were refused.
    from bot.validation import parse_contact_name, parse_entity_name

    for bad, why in (("我要改邮箱", "一句话"), ("我不想填这个了啊", "一句话"), ("我不知道", "一句话"), ("您好", "不是联系人"),
                     ("为什么要填姓名", "问题"), ("请问填谁", "问题"), ("是不是填法人", "问题"), ("没有联系人", "一句话"),
                     ("我自己", "可以是您本人"), ("我也不清楚", "不是联系人"),
                     ("我是张三", "我是"), ("这个怎么填", "问题"), ("好的", "不是联系人姓名"),
                     ("有限公司", "完整"), ("张三~", None)):
        if why is None:
            assert parse_contact_name(bad) == "张三"  # what a phone keyboard adds, dropped
            continue
        with pytest.raises(Invalid) as refused:
            parse_contact_name(bad)
        assert why in refused.value.message and refused.value.field == "contact_name", (bad, refused.value.message)
    for bad, why in (("企業", "主体类型"), ("個人", "主体类型"), ("跳過", "不能跳过"), ("沒有", "不能跳过"),
                     ("服務協議", "指令")):
        with pytest.raises(Invalid) as refused:
            parse_entity_name(bad, "individual")
        assert why in refused.value.message, (bad, refused.value.message)
    for bad, why in (("有限公司", "完整"), ("我不知道叫什么", "一句话"), ("什么是信用代码", "问题"),
                     ("为什么要填名称", "问题"), ("请问需要营业执照", "问题"), ("如何注册公司", "问题"),
                     ("我们还没有营业执照", "一句话"), ("我先问问老板", "一句话"), ("我要注册公司", "一句话"),
                     ("我还没有注册公司", "一句话"), ("我没有营业执照的店", "一句话"),
                     ('=HYPERLINK("x")', "符号"), ("<b>南宁公司</b>", "网页标记")):
        with pytest.raises(Invalid) as refused:
            parse_entity_name(bad, "enterprise")
        assert why in refused.value.message, (bad, refused.value.message)
    # Real names that look close to them stay names (a review found these refused).
    for good in ("我爱我家控股集团有限公司", "什么值得买科技有限公司", "饿了么网络科技有限公司", "南宁市青秀区星空网吧",
                 "夜色酒吧", "悦读书吧", "我的钢铁网", "我是大厨私房菜馆", "不知道先生咖啡馆", "如何文化传媒有限公司",
                 "怎么样餐饮管理有限公司", "一定要幸福婚纱摄影", "100%鲜榨果汁店", "C#编程培训工作室", "+1健身工作室",
                 '南宁市"好运来"餐饮店', "南宁]]>测试贸易有限公司", "ACME Co., Ltd.", "南宁市停车收费管理有限公司",
                 "你好饭团餐饮店", "请问茶馆", "有没有书店", "没有名字的小店", "南宁市注册会计师事务所",
                 "我爱填字游戏工作室", "我们的手机维修店"):
        assert parse_entity_name(good, "enterprise") == good
    for good in ("李想", "陳大文", "欧阳娜娜", "李呀呀", "买买提·吐尔逊", "O'Brien", "Jean-Luc"):
        assert parse_contact_name(good) == good
    # A company's name where a person's goes (个人 step 2, a contact): no one's name.
    for company in ("南宁市小明网络科技有限公司", "小明工作室"):
        for parse in (lambda t: parse_entity_name(t, "individual"), parse_contact_name):
            with pytest.raises(Invalid) as refused:
                parse(company)
            assert "企业或商户的名称" in refused.value.message


async def test_questions_and_requests_at_a_name_step_are_not_saved_as_names(service):
    # 不同意会怎样 became the name, 怎么注销 the contact; 我同意了吗 quoted 前言.3 (使用即同意).
    await accepted(service, "o-namestep")
    replies = await chat(service, "o-namestep", "注册", "个人", "不同意会怎样")
    assert replies[-1].startswith("是否同意由您决定") and "还没有完成" in replies[-1], replies[-1]
    assert "您已于" in (await chat(service, "o-namestep", "我同意了吗"))[-1]  # from their record
    status = (await chat(service, "o-namestep", "同意状态"))[-1]
    assert "您已于" in status and "不能作为这一步的内容" not in status, status
    for said in ("版权归谁", "人工客服", "撤回同意吧"):
        reply = (await chat(service, "o-namestep", said))[-1]
        assert "真实姓名" in reply and "年满" not in reply, (said, reply)  # still asked for the name
    replies = await chat(service, "o-namestep", "张三", "是", "怎么注销")
    assert "联系人" in replies[-1] and "手机" not in replies[-1].rsplit("\n", 1)[-1], replies[-1]
    assert (await service.runtime.services.dialogs.load("o-namestep")).data["answers"].get("contact_name") is None


async def test_a_question_inside_registration_is_answered_and_the_step_asked_again(service):
    # A question at a step got "not a name … reply 取消 to ask first": the answer
    # cost the user everything typed. It is answered, and the dialog goes on.
    await accepted(service, "o-ask")
    replies = await chat(service, "o-ask", "注册", "企业", "我上传的图片版权归谁？")
    assert "4.1" in replies[-1] and "还没有完成" in replies[-1] and "注册名称" in replies[-1], replies[-1]
    replies = await chat(service, "o-ask", "南宁市测试贸易有限公司", CODE, "王五", "为什么要手机号")
    assert "以上是对您问题的回答" in replies[-1] and "手机号" in replies[-1].rsplit("请继续", 1)[1], replies[-1]
    replies = await chat(service, "o-ask", "13812345678", "跳过", "注销账户以后我的数据怎么办？")
    assert "以上是对您问题的回答" in replies[-1] and "确认" in replies[-1].rsplit("请继续", 1)[1], replies[-1]
    replies = await chat(service, "o-ask", "确认")
    merchant = await service.runtime.merchants.get("o-ask")
    assert merchant is not None and merchant.entity_name == "南宁市测试贸易有限公司" and merchant.phone == "13812345678"
    # About the form itself: the agreement's registration clauses, not the nearest
    # clause (手机号会被公开吗 quoted 4.2's licence to publish content).
    await chat(service, "o-ask3", "同意")
    replies = await chat(service, "o-ask3", "注册", "个人", "张三", "是", "李四", "手机号会被公开吗")
    assert texts.REGISTRATION_FORM_HELP in replies[-1] and "4.2" not in replies[-1], replies[-1]
    # Not every question with 资料 in it is about the form: this one is the Q&A's.
    replies = await chat(service, "o-ask3", "注销后我的资料会删除吗？")
    assert texts.REGISTRATION_FORM_HELP not in replies[-1], replies[-1]
    asked = [q["question"] for q in await service.runtime.qa_log.export("o-ask3")]
    assert "手机号会被公开吗" in asked and "注销后我的资料会删除吗？" in asked  # in the log admins review
    # …but the form's question as answered: the unanswered list sent admins after a problem there is not.
    replies = await chat(service, "o-ask3", "请问这个名字要和身份证一致吗")
    assert texts.REGISTRATION_FORM_HELP in replies[-1]
    assert "请问这个名字要和身份证一致吗" in [q["question"] for q in await service.runtime.qa_log.export("o-ask3")]
    unanswered = [q["question"] for q in await service.runtime.qa_log.recent("abstain")]
    assert "请问这个名字要和身份证一致吗" not in unanswered
    # A question the agreement does not answer: the step's own message, not "not covered".
    replies = await chat(service, "o-ask3", "13812345678？")
    assert "只能包含数字" in replies[-1] and "没有找到" not in replies[-1], replies[-1]
    # Text that is no question still gets the step's own message.
    await chat(service, "o-ask2", "同意")
    replies = await chat(service, "o-ask2", "注册", "企业", "南宁市测试贸易有限公司", "12345")
    assert "以上是对您问题的回答" not in replies[-1] and "信用代码" in replies[-1], replies[-1]


async def test_skip_at_the_contact_name_step_is_no_name(service):
    # 跳过 skips the e-mail step; at the contact's name it was stored as the name.
    await accepted(service, "o-skip")
    replies = await chat(service, "o-skip", "注册", "企业", "南宁市测试贸易有限公司", CODE, "跳过")
    assert "不能跳过" in replies[-1] and "联系人" in replies[-1], replies[-1]
    replies = await chat(service, "o-skip", "王五", "13812345678", "跳过")
    assert "联系人：王五" in replies[-1] and "邮箱：（未填写）" in replies[-1], replies[-1]


def test_a_sentence_at_the_contact_step_is_no_name_and_the_registrant_is_named_by_同上():
    # 法人是我们老板，我是负责对接的 was stored as the contact's name (its comma made ASCII), and
    # 李娜, sent next, refused as a phone number.
    from bot.validation import parse_contact_name, parse_entity_name

    for bad, why in (("法人是我们老板，我是负责对接的", "不需要填写法定代表人"), ("和法人一样", "不需要填写法定代表人"),
                     ("法人代表张伟，联系人李娜", "不需要填写法定代表人"), ("李娜负责", "一句话"),
                     ("张伟，李娜", "一句话"), ("跟上面一样", "可以是您本人"), ("就我自己", "可以是您本人"),
                     ("还是我吧", "可以是您本人"), ("同上", "可以是您本人")):
        with pytest.raises(Invalid) as refused:
            parse_contact_name(bad)
        assert why in refused.value.message and refused.value.field == "contact_name", (bad, refused.value.message)
    # An individual's own name is what 同上 / 本人 / 就是我 stand for.
    for same in ("同上", "本人", "就是我", "跟上面一样", "还是我吧", "我自己"):
        assert parse_contact_name(same, "王秀英") == "王秀英", same
    # "My name is …" in full: the name.
    for said, name in (("联系人是李娜", "李娜"), ("我叫张三", "张三"), ("名字是王五", "王五"), ("联系人叫 李娜。", "李娜")):
        assert parse_contact_name(said) == name, said
    assert parse_entity_name("我叫王秀英", "individual") == "王秀英"


async def test_the_contact_step_in_a_merchants_own_words(service):
    await accepted(service, "o-contact")
    replies = await chat(service, "o-contact", "注册", "企业", "南宁市绿源农产品贸易有限公司", CODE,
                         "法人是我们老板，我是负责对接的")
    assert "法定代表人" in replies[-1] and "联系人" in replies[-1], replies[-1]
    replies = await chat(service, "o-contact", "李娜", "13977001234", "跳过")
    assert "联系人：李娜" in replies[-1] and "手机号码：13977001234" in replies[-1], replies[-1]
    await accepted(service, "o-self")
    replies = await chat(service, "o-self", "注册", "个人", "王秀英", "是", "同上", "13877123456", "跳过")
    assert "联系人：王秀英" in replies[-1], replies[-1]


async def test_questions_about_the_forms_items_are_answered_at_the_step(service):
    # A fruit-shop owner's questions at the credit-code step were counted as a code
    # ("应为 18 位，您输入了 11 位"), and 这个要钱吗 at the summary repeated the summary.
    await accepted(service, "o-faq")
    await chat(service, "o-faq", "注册", "企业", "南宁市青秀区黄记水果店")
    for question, said in (("统一社会信用代码是什么", "营业执照上的 18 位代码"), ("在哪里看", "营业执照上的 18 位代码"),
                           ("我没有营业执照", "选择“个人”"), ("没有营业执照怎么办", "选择“个人”"),
                           ("个体户也要填这个吗", "个体工商户有营业执照"), ("这个要钱吗", "没有关于价格")):
        reply = (await chat(service, "o-faq", question))[-1]
        assert said in reply and "您输入了" not in reply and "统一社会信用代码（营业执照上）" in reply, (question, reply)
    replies = await chat(service, "o-faq", CODE, "王五", "13812345678", "我不要填邮箱")  # no e-mail, in her words
    assert "邮箱：（未填写）" in replies[-1], replies[-1]
    reply = (await chat(service, "o-faq", "多少钱"))[-1]
    assert "没有关于价格" in reply and "确认" in reply, reply


async def test_how_to_change_details_or_stop_messages_is_said_outside_the_form(service):
    await register_enterprise(service, "o-how-to")
    for asked in ("我要改手机号", "换号码了", "手机号填错了"):
        reply = (await chat(service, "o-how-to", asked))[-1]
        assert "修改资料" in reply and "没有找到" not in reply, (asked, reply)
    for asked in ("我不想再收到你们任何消息", "别给我发消息了"):
        reply = (await chat(service, "o-how-to", asked))[-1]
        assert "退订 全部" in reply, (asked, reply)
    for asked, said in (("这个要钱吗", "没有关于价格"), ("有纠纷的话在哪里打官司", "没有约定争议由哪个法院管辖"),
                        ("我要投诉", "联系信息页")):
        reply = (await chat(service, "o-how-to", asked))[-1]
        assert said in reply and "第6节" not in reply and "根据" not in reply, (asked, reply)
    reply = (await chat(service, "o-how-to", "[微笑][微笑]"))[-1]
    assert "请用一句话具体描述" in reply, reply


def test_a_value_typed_with_its_forms_label_is_the_value():
    # 姓名：张三, copied from a template, was stored with its label as the name.
    from bot.validation import parse_contact_name, parse_email, parse_entity_name

    assert parse_entity_name("姓名：张三", "individual") == parse_contact_name("联系人: 张三") == "张三"
    assert parse_entity_name("企业名称：南宁市示例贸易有限公司", "enterprise") == "南宁市示例贸易有限公司"
    assert parse_phone("手机号：138 1234 5678") == "13812345678"
    assert parse_email("邮箱：Wang@Example.com") == "wang@example.com"
    assert parse_email("zhang@qq。com") == "zhang@qq.com"  # a Chinese keyboard's full stop for the dot
    assert parse_credit_code("统一社会信用代码：" + CODE) == CODE
    for label in ("姓名：", "联系人:"):  # the label alone is no name
        with pytest.raises(Invalid) as refused:
            parse_contact_name(label)
        assert "不是联系人姓名" in refused.value.message


async def test_a_name_typed_with_its_label_is_stored_without_it(service):
    await accepted(service, "o-label")
    await chat(service, "o-label", "注册", "个人", "姓名：张三", "是", "联系人：李四", "手机：13912345678", "跳过", "确认")
    merchant = await service.runtime.merchants.get("o-label")
    assert (merchant.entity_name, merchant.contact_name, merchant.phone) == ("张三", "李四", "13912345678")
    # Labels in Traditional characters too (聯繫人：張忠謀 was "a sentence", 手機：… "only digits").
    await accepted(service, "o-label-tw")
    await chat(service, "o-label-tw", "註冊", "個人", "姓名：張忠謀", "是", "聯繫人：張忠謀", "手機：13912345678", "郵箱：a@b.cn", "確認")
    merchant = await service.runtime.merchants.get("o-label-tw")
    assert (merchant.contact_name, merchant.phone, merchant.email) == ("張忠謀", "13912345678", "a@b.cn")


def test_the_forms_own_labels_and_answers_are_no_names():
    # 修改 → 名称 → 邮箱 stored 邮箱 as the legal name; 手机号码, 是的, 暂时没有, aaaa were names too.
    from bot.validation import parse_contact_name, parse_entity_name

    for typed in ("邮箱", "手机号码", "电话", "微信", "统一社会信用代码", "成年", "是的", "aaaa", "哈哈哈哈"):
        with pytest.raises(Invalid):
            parse_contact_name(typed)
        with pytest.raises(Invalid):
            parse_entity_name(typed, "individual")
    for typed in ("暂时没有", "还没想好", "没有公司名", "跟营业执照一样", "营业执照上的名称", "aaaa", "哈哈哈哈"):
        with pytest.raises(Invalid):
            parse_entity_name(typed, "enterprise")
    # A registered name ending as a business's does is one, whatever words it holds (it was "a question").
    for name in ("南宁市哪吒手机维修有限公司", "谁家手机店"):
        assert parse_entity_name(name, "enterprise") == name
    assert parse_contact_name("丽丽") == "丽丽"  # two alike are a name


def test_stickers_examples_and_placeholders_are_no_details():
    # [捂脸] (a WeChat sticker as it reaches us), the prompt's own examples and 同上 were stored.
    from bot.validation import parse_contact_name, parse_entity_name

    for typed in ("[捂脸]", "[微笑]", "张三[呲牙]"):
        with pytest.raises(Invalid) as refused:
            parse_contact_name(typed)
        assert "表情" in refused.value.message
    with pytest.raises(Invalid):
        parse_entity_name("[呲牙][呲牙]", "enterprise")
    assert parse_entity_name("南宁[好运来]餐饮店", "enterprise") == "南宁[好运来]餐饮店"  # brackets of a name stay
    with pytest.raises(Invalid) as refused:
        parse_credit_code(texts.EXAMPLE_CREDIT_CODE)
    assert "示例" in refused.value.message
    with pytest.raises(Invalid) as refused:
        parse_entity_name(texts.EXAMPLE_COMPANY_NAME, "enterprise")
    assert "示例" in refused.value.message
    with pytest.raises(Invalid) as refused:  # the e-mail, a step early
        parse_contact_name("a@b.cn")
    assert "邮箱" in refused.value.message
    for placeholder in ("同上", "老板", "null"):
        with pytest.raises(Invalid):
            parse_contact_name(placeholder)


def test_the_age_and_the_entity_type_in_words_of_their_own():
    from bot.validation import parse_adult, parse_entity_type

    for typed in ("已满18", "是滴", "成年了", "已满十八周岁", "18岁以上", "是", "已年满18周岁", "年满18", "我已满18周岁",
                  "是的，已满18", "确认已满18周岁"):  # the prompt's own words (请确认您已年满 18 周岁) too
        assert parse_adult(typed) is True, typed
    for typed in ("未满18", "未成年", "没满十八岁", "不到18岁", "否", "还没有满18岁", "未年满18周岁"):
        assert parse_adult(typed) is False, typed
    with pytest.raises(Invalid) as refused:
        parse_entity_type("个体户")
    assert "选择“企业”" in refused.value.message and "92 开头" in refused.value.message


async def test_a_summary_confirmed_in_other_words_and_my_account_while_filling(service):
    await accepted(service, "o-words")
    filling = await chat(service, "o-words", "注册", "个人", "张三", "我的账户")
    assert filling[-1].startswith(texts.NOT_REGISTERED_FILLING) and "回复“注册”" not in filling[-1], filling[-1]
    replies = await chat(service, "o-words", "已满18", "张三", "13912345678", "跳过", "确定")
    assert replies[-1].startswith("注册信息已提交") or "已提交" in replies[-1], replies[-1]
    assert (await service.runtime.merchants.get("o-words")).phone == "13912345678"


def test_email_rules():
    from bot.validation import parse_email

    assert parse_email(" Wang.Wu+shop@Mail.Example.com.cn ") == "wang.wu+shop@mail.example.com.cn"
    for bad in (".a@example.com", "a..b@example.com", "a.@example.com", "a@-b.com", "a@b-.com", "a@example", "a@@b.com"):
        with pytest.raises(Invalid):
            parse_email(bad)


# -- 取消, 上一步, 修改 -------------------------------------------------------------------


async def test_cancel_and_back(service):
    await accepted(service, "o-nav")
    replies = await chat(service, "o-nav", "注册", "上一步", "企业", "上一步")
    assert "已经是第一步" in replies[1]
    assert replies[3].startswith(texts.PROMPT_ENTITY_TYPE) and "当前填写：企业" in replies[3]
    cancelled = await service.wechat.ask("o-nav", "取消")
    assert "已取消" in cancelled
    assert await service.runtime.services.dialogs.load("o-nav") is None
    assert await service.runtime.services.dialogs.load_draft("o-nav", "registration") is None


async def test_edit_from_summary_including_entity_type(service):
    await accepted(service, "o-edit")
    await chat(service, "o-edit", *ENTERPRISE)
    choose = await service.wechat.ask("o-edit", "修改")
    assert "1. 主体类型" in choose and "6. 邮箱" in choose
    phone_prompt = await service.wechat.ask("o-edit", "5")
    assert phone_prompt.startswith(unnumbered(texts.PROMPT_PHONE)) and "当前填写：13812345678" in phone_prompt
    assert "第 5 步" not in phone_prompt  # the item's number in the list above is the one that counts
    summary = await service.wechat.ask("o-edit", "13900001111")
    assert "手机号码：13900001111" in summary and "确认" in summary

    # Switching to 个人 drops the credit code, asks the name again (a company
    # name is not a person's) and then the age question.
    await service.wechat.ask("o-edit", "修改")
    await service.wechat.ask("o-edit", "主体类型")
    name = await service.wechat.ask("o-edit", "个人")
    assert name.startswith(unnumbered(texts.prompt_entity_name("individual"))) and "当前填写" not in name
    adult = await service.wechat.ask("o-edit", "张三")
    assert adult.startswith(unnumbered(texts.PROMPT_ADULT))
    summary = await service.wechat.ask("o-edit", "是")
    assert "统一社会信用代码" not in summary and "主体类型：个人" in summary and "张三" in summary
    await service.wechat.ask("o-edit", "确认")
    merchant = await service.runtime.merchants.get("o-edit")
    assert (merchant.entity_type, merchant.entity_name, merchant.credit_code, merchant.phone) == (
        "individual", "张三", None, "13900001111")


async def test_commands_still_work_inside_the_dialog(service):
    await accepted(service, "o-mid")
    await chat(service, "o-mid", "注册", "企业")
    # Answered, with a word that the dialog still waits.
    assert await service.wechat.ask("o-mid", "帮助") == texts.HELP + "\n\n" + texts.dialog_waiting(texts.REGISTRATION_TITLE)
    # Another command is not taken as the name.
    again = await service.wechat.ask("o-mid", "注册")
    assert again.startswith(texts.dialog_command_inside(texts.REGISTRATION_TITLE, "注册"))
    assert texts.prompt_entity_name("enterprise") in again
    # Commands with an argument are commands too, never a company called "条款 2".
    section = await service.wechat.ask("o-mid", "条款 2")
    assert "微拓帐户" in section and section.endswith(texts.dialog_waiting(texts.REGISTRATION_TITLE))
    opted = await service.wechat.ask("o-mid", "退订 服务公告")
    assert "服务公告" in opted and opted.endswith(texts.dialog_waiting(texts.REGISTRATION_TITLE))
    state = await service.runtime.services.dialogs.load("o-mid")
    assert state.name == "registration:entity_name" and "entity_name" not in state.data["answers"]
    # A name that merely starts like a command is a name.
    named = await service.wechat.ask("o-mid", "订阅号运营工作室")
    assert named.startswith(texts.PROMPT_CREDIT_CODE), named
    assert texts.dialog_waiting(texts.REGISTRATION_TITLE) not in named  # an answer: no "not finished" note
    assert await service.wechat.ask("o-mid", "上一步")
    # The dialog waits where it was.
    reply = await service.wechat.ask("o-mid", "南宁市测试贸易有限公司")
    assert reply.startswith(texts.PROMPT_CREDIT_CODE)
    # At the credit code too: 条款 1.1 shows the clause, not "应为 18 位".
    clause = await service.wechat.ask("o-mid", "条款 1.1")
    assert "1.1" in clause and "18 位" not in clause


async def test_an_amendment_in_force_stops_the_confirmation_until_accepted(service):
    import dataclasses

    from bot.agreement import load_seed
    from bot.terms import Terms

    await accepted(service, "o-amend")
    await chat(service, "o-amend", *ENTERPRISE)
    seed = load_seed()
    first = seed.sections[0]
    changed = dataclasses.replace(first, clauses=(first.clauses[0] + "（修订）", *first.clauses[1:]))
    draft = dataclasses.replace(seed, version="2026-11-26", changes=("第 1 节措辞调整",),
                                sections=(changed, *seed.sections[1:]))
    # Published by another process (the CLI) a moment ago: this one's cache has not seen it.
    rt = service.runtime
    await Terms(rt.versions, rt.broadcasts, rt.clock).publish(draft, reason="legal", effective_at=None, by="test")
    confirm = await service.wechat.ask("o-amend", "确认")
    assert "需要您先同意" in confirm and await service.runtime.merchants.get("o-amend") is None
    # What changed is said with it (this process's cached versions did not show the
    # amendment yet, so nothing else did): a 同意 accepted it unseen.
    assert "修改摘要" in confirm and "第 1 节措辞调整" in confirm, confirm
    done = await service.wechat.ask("o-amend", "同意")
    assert "2026-11-26" in done and (await service.runtime.merchants.get("o-amend")) is not None
    # Held by the gate, then the dialog cancelled: 同意 no longer confirms
    # (it said "当前没有正在填写的内容，“确认”无需操作" after the consent).
    await service.wechat.post(event_xml("o-held", "subscribe"))  # shown the version in force
    await accepted(service, "o-held")
    await chat(service, "o-held", *ENTERPRISE)
    again = dataclasses.replace(changed, clauses=(changed.clauses[0] + "（再修订）", *changed.clauses[1:]))
    await Terms(rt.versions, rt.broadcasts, rt.clock).publish(
        dataclasses.replace(draft, version="2026-11-27-legal", changes=("第 1 节再次修订",), sections=(again, *seed.sections[1:])),
        reason="legal", effective_at=None, by="test")
    assert "需要您先同意" in await service.wechat.ask("o-held", "确认")
    assert "已取消" in await service.wechat.ask("o-held", "取消")
    later = await service.wechat.ask("o-held", "同意")
    assert "已记录" in later and "确认" not in later and await service.runtime.merchants.get("o-held") is None


# -- consent first --------------------------------------------------------------------------------


async def test_registration_asks_for_consent_first_then_carries_on(service):
    first = await service.wechat.ask("o-new", "注册")
    assert "需要您先同意" in first
    assert await service.runtime.services.dialogs.load("o-new") is None
    after = await service.wechat.ask("o-new", "同意")
    assert "已记录" in after and texts.PROMPT_ENTITY_TYPE in after
    assert "第 2 步" in await service.wechat.ask("o-new", "企业")


async def test_form_answers_typed_before_consenting_are_told_to_consent_first_and_not_logged_in_full(service):
    # 个人 got clause 3.1, the name and phone "no clause found", and the phone and
    # e-mail sat in full in the question log every admin reads.
    assert "需要您先同意" in await service.wechat.ask("o-eager", "注册")
    for typed in ("个人", "王秀英", "138 7712 3456", "wang123@qq.com"):
        reply = await service.wechat.ask("o-eager", typed)
        assert reply == texts.waiting_for_consent("注册"), (typed, reply)
    assert "归您所有" in await service.wechat.ask("o-eager", "我上传的图片版权归谁")  # a question is still answered
    await service.wechat.ask("o-eager", "我的手机13877123456和邮箱wang123@qq.com会被公开吗")
    after = await service.wechat.ask("o-eager", "同意")
    assert texts.PROMPT_ENTITY_TYPE in after  # and the registration carries on
    await service.runtime.qa_log.flush()
    logged = " ".join(entry["question"] for entry in await service.runtime.qa_log.recent())
    assert "我的手机138******56和邮箱w***@qq.com会被公开吗" in logged, logged  # masked in the admins' log
    assert "13877123456" not in logged and "wang123@" not in logged and "王秀英" not in logged



    # 注册 asked for consent first; the user said 取消: a later 同意 records the
    # consent and starts nothing (registration began all the same).
    assert "需要您先同意" in await service.wechat.ask("o-changed-mind", "注册")
    cancelled = await service.wechat.ask("o-changed-mind", "取消")
    assert "已取消“注册”" in cancelled and "无需操作" not in cancelled
    after = await service.wechat.ask("o-changed-mind", "同意")
    assert "已记录" in after and texts.PROMPT_ENTITY_TYPE not in after
    assert await service.runtime.services.dialogs.load("o-changed-mind") is None
    assert "无需操作" in await service.wechat.ask("o-changed-mind", "取消")  # nothing left to cancel
    # Said as 取消注册, 算了 or 退出 too (they were answered by the Q&A, and 同意 then registered).
    for i, word in enumerate(("取消注册", "算了", "退出。", "算了吧", "我不想注册了")):  # the last got "回复注册即可开始"
        openid = f"o-changed-{i}"
        assert "需要您先同意" in await service.wechat.ask(openid, "注册")
        assert "已取消“注册”" in await service.wechat.ask(openid, word)
        assert texts.PROMPT_ENTITY_TYPE not in await service.wechat.ask(openid, "同意")


async def test_a_command_held_for_consent_is_dropped_when_the_user_turns_to_another(service):
    # 注册 (held for consent), then 撤回同意 and 导出我的数据, and a 同意 much later opened the form unasked.
    assert "需要您先同意" in await service.wechat.ask("o-drift", "注册")
    await service.wechat.ask("o-drift", "导出我的数据")
    later = await service.wechat.ask("o-drift", "同意")
    assert "已记录" in later and texts.PROMPT_ENTITY_TYPE not in later
    # Reading the agreement, or one's consent, on the way to agreeing keeps it.
    assert "需要您先同意" in await service.wechat.ask("o-reads", "注册")
    await service.wechat.ask("o-reads", "条款 2")
    await service.wechat.ask("o-reads", "同意状态")
    assert texts.PROMPT_ENTITY_TYPE in await service.wechat.ask("o-reads", "同意")


# -- expiry and resume -------------------------------------------------------------------------------


async def test_state_expires_after_30_minutes_and_resume_is_offered(service):
    await accepted(service, "o-back")
    await chat(service, "o-back", "注册", "企业", "南宁市测试贸易有限公司")
    ttl = await service.runtime.redis.ttl(key("dialog", "o-back"))
    assert 1700 < ttl <= 1800
    await service.runtime.redis.delete(key("dialog", "o-back"))  # 30 idle minutes pass

    late = await service.wechat.ask("o-back", CODE)  # the answer to the step, sent after the dialog ended
    assert not late.startswith(texts.PROMPT_CONTACT_NAME)  # not in a dialog any more
    # Told so, and offered the draft (it was the Q&A's "no clause answers this" and a hint).
    assert late.startswith(texts.DIALOG_TIMED_OUT) and "《" not in late, late
    assert "未完成的商家注册" in late and "南宁市测试贸易有限公司" in late and "继续" in late
    resumed = await service.wechat.ask("o-back", "继续")
    assert resumed.startswith(texts.PROMPT_CREDIT_CODE)
    assert (await service.wechat.ask("o-back", CODE)).startswith(texts.PROMPT_CONTACT_NAME)

    await service.runtime.redis.delete(key("dialog", "o-back"))
    await service.wechat.ask("o-back", "注册")
    assert (await service.wechat.ask("o-back", "重新开始")).startswith(texts.PROMPT_ENTITY_TYPE)

    # The dialog's own words after it ended are no questions: 继续 resumes the draft at once
    # (it was offered, to be answered 继续 again), 取消 deletes it.
    await chat(service, "o-back", "企业", "南宁市测试贸易有限公司")
    await service.runtime.redis.delete(key("dialog", "o-back"))
    assert (await service.wechat.ask("o-back", "继续")).startswith(texts.PROMPT_CREDIT_CODE)
    await service.runtime.redis.delete(key("dialog", "o-back"))
    for talk in ("算了", "取消？"):  # outside a dialog, talk: the draft stays
        assert await service.wechat.ask("o-back", talk) != texts.DRAFT_DISCARDED
        assert await service.runtime.services.dialogs.load_draft("o-back", "registration") is not None
    assert await service.wechat.ask("o-back", "取消") == texts.DRAFT_DISCARDED
    assert await service.runtime.services.dialogs.load_draft("o-back", "registration") is None
    assert await service.wechat.ask("o-back", "上一步") == texts.NO_DIALOG_OPEN.format(word="上一步")
    assert (await service.wechat.ask("o-back", "注册")).startswith(texts.PROMPT_ENTITY_TYPE)  # nothing to resume

    # A draft left, then consent withdrawn: 注册 waits for consent, and 取消 drops both, saying so
    # (the draft went unsaid).
    await chat(service, "o-back", "企业", "南宁市测试贸易有限公司")
    await service.runtime.redis.delete(key("dialog", "o-back"))
    await service.wechat.ask("o-back", "撤回同意")
    await service.wechat.ask("o-back", "注册")
    dropped = await service.wechat.ask("o-back", "取消")
    assert "已取消“注册”" in dropped and texts.DRAFT_DISCARDED in dropped, dropped
    assert await service.runtime.services.dialogs.load_draft("o-back", "registration") is None


# -- one message at a time, retries once --------------------------------------------------------------


async def test_concurrent_messages_are_handled_one_at_a_time(service):
    await accepted(service, "o-race")
    await chat(service, "o-race", "注册", "个人", "张三", "是", "张三")
    first, second = await asyncio.gather(
        service.wechat.ask("o-race", "13812345678"), service.wechat.ask("o-race", "13812345678")
    )
    # One answer advanced to the email step; the other was then checked as an email.
    advanced = [r for r in (first, second) if r.startswith(texts.PROMPT_EMAIL)]
    refused = [r for r in (first, second) if r.startswith("邮箱格式不正确")]
    assert len(advanced) == 1 and len(refused) == 1
    assert (await service.runtime.services.dialogs.load("o-race")).name == "registration:email"


async def test_retried_message_does_not_advance_twice(service):
    await accepted(service, "o-retry")
    await chat(service, "o-retry", "注册")
    xml = text_xml("o-retry", "企业", msg_id=990001)
    replies = [service.wechat.reply(await service.wechat.post(xml))["Content"] for _ in range(3)]
    assert len(set(replies)) == 1 and "第 2 步" in replies[0]
    state = await service.runtime.services.dialogs.load("o-retry")
    assert state.name == "registration:entity_name" and state.data["history"] == ["entity_type"]


# -- the account -----------------------------------------------------------------------------------------


async def test_my_account_and_edit_profile(service):
    assert await service.wechat.ask("o-acct", "我的账户") == texts.NOT_REGISTERED
    await register_enterprise(service, "o-acct")
    overview = await service.wechat.ask("o-acct", "我的账户")
    assert "状态：待审核" in overview and "名称：南宁市测试贸易有限公司" in overview

    await service.runtime.merchants.set_status("o-acct", "active", "资料齐全", by="admin")
    summary = await service.wechat.ask("o-acct", "修改资料")
    # Changing a saved record is no registration (it said 请核对商家注册信息, 您正在填写商家注册).
    assert "请核对您的商家资料" in summary and "注册" not in summary, summary
    inside = await service.wechat.ask("o-acct", "注册")
    assert "您正在修改商家资料" in inside and "填写商家注册" not in inside, inside
    # Becoming an individual under 18 ends the change, and says the account is as it was.
    replies = await chat(service, "o-acct", "修改", "1", "个人", "张三", "否")
    assert "18 周岁" in replies[-1] and "原有的商家资料没有改变" in replies[-1], replies
    assert (await service.runtime.merchants.get("o-acct")).entity_type == "enterprise"
    assert "请核对您的商家资料" in await service.wechat.ask("o-acct", "修改资料")
    # A command answered meanwhile reminds of the change under way, not of a registration.
    aside = await service.wechat.ask("o-acct", "帮助")
    assert "资料修改还没有完成" in aside and "注册还没有完成" not in aside
    await chat(service, "o-acct", "修改", "联系人", "赵六")
    updated = await service.wechat.ask("o-acct", "确认")
    assert "资料已更新" in updated and "已生效" in updated
    assert (await service.runtime.merchants.get("o-acct")).contact_name == "赵六"

    # Changing the entity sends the account back to review.
    await chat(service, "o-acct", "修改资料", "修改", "名称", "南宁市另一家贸易有限公司")
    resubmitted = await service.wechat.ask("o-acct", "确认")
    assert "重新审核" in resubmitted
    assert (await service.runtime.merchants.get("o-acct")).status == "pending_review"


async def test_suspension_is_explained_and_reinstated(service, emulator):
    await register_enterprise(service, "o-susp")
    merchants = service.runtime.merchants
    await merchants.set_status("o-susp", "active", "资料齐全", by="admin")
    await merchants.set_status("o-susp", "suspended", "多次发布违规内容（协议第1节：滥用服务）", by="admin")
    overview = await service.wechat.ask("o-susp", "我的账户")
    assert "已被暂停" in overview and "多次发布违规内容" in overview
    assert "条款" in overview and "导出我的数据" in overview and "联系" in overview
    assert "已被暂停" in await service.wechat.ask("o-susp", "修改资料")
    assert "已被暂停" in await service.wechat.ask("o-susp", "注册")
    why = await service.wechat.ask("o-susp", "我的账号为什么被暂停了")  # their record, not a clause
    assert "已被暂停" in why and "多次发布违规内容" in why, why
    await merchants.set_status("o-susp", "active", "申诉通过", by="admin")
    assert "状态：已生效" in await service.wechat.ask("o-susp", "我的账户")
    history = [(e.status, e.reason) for e in await merchants.repo.history("o-susp")]
    assert history[-2:] == [("suspended", "多次发布违规内容（协议第1节：滥用服务）"), ("active", "申诉通过")]
    # Each change an admin made was told to the merchant, opt-outs or not (it is their account).
    await service.runtime.worker(concurrency=2).run_until_idle(30)
    told = [m["body"]["text"]["content"] for m in await emulator.messages("o-susp") if m["msgtype"] == "text"]
    assert any("审核通过" in t for t in told) and any("已被暂停" in t and "多次发布违规内容" in t for t in told)
    assert any("已恢复正常" in t and "申诉通过" in t for t in told)


async def test_closure_erases_profile_and_keeps_the_ledger(service):
    await register_enterprise(service, "o-bye")
    confirm = await service.wechat.ask("o-bye", "注销账户")
    assert "导出我的数据" in confirm and "确认注销" in confirm and "保留" in confirm
    assert await service.wechat.ask("o-bye", "好的") == texts.CLOSE_CHOICE
    # A question before deciding is answered, and the choice asked again (it got the choice alone).
    asked = await service.wechat.ask("o-bye", "等一下，我停止使用后你们还能用我上传的图片吗？")
    assert asked.startswith("根据《") and asked.endswith(texts.CLOSE_CHOICE), asked
    assert "您已于" in await service.wechat.ask("o-bye", "我同意了吗")
    assert (await service.runtime.merchants.get("o-bye")).status == "pending_review"
    assert await service.wechat.ask("o-bye", "取消") == texts.CLOSE_CANCELLED
    assert (await service.runtime.merchants.get("o-bye")).status == "pending_review"

    await service.wechat.ask("o-bye", "注销账户")
    assert await service.wechat.ask("o-bye", "确认注销") == texts.CLOSED
    merchant = await service.runtime.merchants.get("o-bye")
    assert merchant.status == "closed"
    assert [merchant.entity_name, merchant.credit_code, merchant.contact_name, merchant.phone, merchant.email] == [None] * 5
    assert (await service.runtime.merchants.repo.history("o-bye"))[-1].reason == "用户在公众号申请注销"
    assert [r.action for r in await service.runtime.ledger.history("o-bye")] == ["accept"]

    document = await service.runtime.exports.document("o-bye")
    assert document["merchant"]["status"] == "closed" and document["merchant"]["phone"] is None
    assert document["consents"] and document["merchant"]["status_history"][-1]["status"] == "closed"
    assert await service.wechat.ask("o-bye", "注销账户") == texts.ALREADY_CLOSED
    overview = await service.wechat.ask("o-bye", "我的账户")
    assert "状态：已注销" in overview and "未填写" not in overview  # no blank form of erased fields
    # A closed account may register again.
    assert (await service.wechat.ask("o-bye", "注册")).startswith(texts.PROMPT_ENTITY_TYPE)


async def test_what_changed_asked_at_a_step_is_answered_and_the_step_asked_again(service):
    # At the e-mail step, 协议最近改了什么 (no question mark) was refused as 邮箱格式不正确.
    await accepted(service, "o-ask-changes")
    await chat(service, "o-ask-changes", "注册", "个人", "张三", "是", "李四", "13812345678")
    reply = await service.wechat.ask("o-ask-changes", "协议最近改了什么")
    assert "以来没有修改过" in reply and reply.rstrip().endswith("（回复“上一步”返回，回复“取消”退出）"), reply
    assert "邮箱格式不正确" not in reply


async def test_registering_in_the_words_people_use(service):
    # 我要注册 quoted clause 2.1 from the Q&A instead of starting the form.
    await accepted(service, "o-join")
    for words in ("我要注册", "注册商家", "我要入驻"):
        assert (await service.wechat.ask("o-join", words)).startswith(texts.PROMPT_ENTITY_TYPE), words
        await service.wechat.ask("o-join", "取消")
    assert "需要您先同意" in await service.wechat.ask("o-new", "我想注册")  # consent first, as for 注册


async def test_account_and_closure_in_the_words_people_use(service):
    await register_enterprise(service, "o-words")
    # 账号 as often as 账户: these went to the agreement's Q&A (我的信息 quoted 7.6, the contact page).
    for words in ("我的账号", "我的信息", "账号信息"):
        assert "状态：待审核" in await service.wechat.ask("o-words", words), words
    assert await service.wechat.ask("o-words", "注销账号") == texts.CLOSE_CONFIRM
    # A nod is not a closure: the data goes for good.
    for nod in ("好的", "是", "提交"):
        assert await service.wechat.ask("o-words", nod) == texts.CLOSE_CHOICE, nod
    assert (await service.runtime.merchants.get("o-words")).status == "pending_review"
    # 确认 typed alone, after the explicit question, is the confirmation (it was refused).
    assert await service.wechat.ask("o-words", "确认。") == texts.CLOSED
    assert (await service.runtime.merchants.get("o-words")).status == "closed"
    # In the middle of registering, 我的账号 is answered and the form waits (it was "another command").
    await chat(service, "o-words", "注册", "个人")
    mid = await service.wechat.ask("o-words", "我的账号")
    assert "状态：已注销" in mid and "商家注册还没有完成" in mid, mid


async def test_declining_in_the_middle_of_registering_says_what_the_form_now_needs(service):
    await accepted(service, "o-no")
    await chat(service, "o-no", *ENTERPRISE)  # at the summary
    declined = await service.wechat.ask("o-no", "不同意")
    # It said "回复内容继续填写", as if the form could still be sent.
    assert "已记录" in declined and "提交需要您同意协议" in declined and "继续填写" not in declined, declined
    assert "需要您先同意" in await service.wechat.ask("o-no", "确认")
    assert await service.runtime.merchants.get("o-no") is None
    # Another command in the middle still gets the usual reminder.
    assert "回复内容继续填写" in await service.wechat.ask("o-no", "帮助")


async def test_export_asked_before_closure_keeps_what_closure_erases(service):
    # The bot suggests exporting before 确认注销; the link may be opened after it.
    from tornado.httpclient import AsyncHTTPClient
    import json

    await register_enterprise(service, "o-keep")
    assert "导出我的数据" in await service.wechat.ask("o-keep", "注销账户")
    url = (await service.wechat.ask("o-keep", "导出我的数据")).split()[-1]
    assert await service.wechat.ask("o-keep", "确认注销") == texts.CLOSED
    # Redis holds the snapshot sealed: neither the phone nor the name can be read there.
    [stored] = [k async for k in service.runtime.redis.scan_iter(match="wb:export:*")]
    sealed = await service.runtime.redis.get(stored)
    assert "13812345678" not in sealed and "测试贸易" not in sealed
    url = service.url + url[len(service.runtime.config.base_url):]
    document = json.loads((await AsyncHTTPClient().fetch(url)).body)
    merchant = document["merchant"]
    assert merchant["status"] == "pending_review" and merchant["phone"] == "13812345678"
    assert merchant["entity_name"] == "南宁市测试贸易有限公司"
    assert (await AsyncHTTPClient().fetch(url, raise_error=False)).code == 404
    assert (await service.runtime.merchants.get("o-keep")).phone is None


async def test_an_export_snapshot_cannot_be_opened_from_redis_alone(service):
    # The chat's reply, link included, is kept in Redis for WeChat's retries: a key
    # from the token alone let whoever reads Redis open the snapshot.
    import base64
    import hashlib

    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from tornado.httpclient import AsyncHTTPClient

    await register_enterprise(service, "o-seal")
    first = (await service.wechat.ask("o-seal", "导出我的数据")).split()[-1]
    second = (await service.wechat.ask("o-seal", "导出我的数据")).split()[-1]
    token = second.rsplit("/", 1)[-1]
    [stored] = [k async for k in service.runtime.redis.scan_iter(match="wb:export:*")]  # the first was replaced
    raw = base64.b64decode((await service.runtime.redis.get(stored)).split(":", 1)[1])
    with pytest.raises(InvalidTag):
        AESGCM(hashlib.sha256(b"wetoop-export-snapshot:" + token.encode()).digest()).decrypt(raw[:12], raw[12:], None)
    base = service.runtime.config.base_url
    assert (await AsyncHTTPClient().fetch(service.url + first[len(base):], raise_error=False)).code == 404
    assert (await AsyncHTTPClient().fetch(service.url + second[len(base):], raise_error=False)).code == 200


async def test_cancel_after_a_confirm_that_was_saved_after_all_says_it_was_saved(service):
    # The database froze as 确认 was stored: the reply said it might not be
    # saved and the dialog stayed at the summary, but the record was written.
    # 取消 then said "您填写的内容没有保存" beside an account pending review.
    await accepted(service, "o-froze")
    await chat(service, "o-froze", *ENTERPRISE)
    answers = {"entity_type": "enterprise", "entity_name": "南宁市测试贸易有限公司", "credit_code": CODE,
               "contact_name": "王五", "phone": "13812345678", "email": "wangwu@example.com"}
    await service.runtime.merchants.save_profile("o-froze", answers, seen="")  # what that 确认 did
    reply = await service.wechat.ask("o-froze", "取消")
    assert reply == texts.dialog_already_stored(texts.REGISTRATION_TITLE) and "没有保存" not in reply
    assert await service.runtime.redis.get(key("dialog", "o-froze")) is None
    assert "待审核" in await service.wechat.ask("o-froze", "我的账户")
    # Cancelled before anything was stored: nothing was saved, as before.
    await accepted(service, "o-plain")
    await chat(service, "o-plain", *ENTERPRISE)
    assert await service.wechat.ask("o-plain", "取消") == texts.dialog_cancelled(texts.REGISTRATION_TITLE)
    assert await service.runtime.merchants.get("o-plain") is None


@pytest.mark.parametrize("profile", [
    {"entity_type": "enterprise", "entity_name": "南宁市测试贸易有限公司", "credit_code": CODE,
     "contact_name": "王五", "phone": "13812345678", "email": "wangwu@example.com"},
    # As the chat dialog gives them: a skipped email is "", and an individual's
    # age confirmation is an answer that is not stored. Neither was taken as the same.
    {"entity_type": "enterprise", "entity_name": "南宁市测试贸易有限公司", "credit_code": CODE,
     "contact_name": "王五", "phone": "13812345678", "email": ""},
    {"entity_type": "individual", "entity_name": "张三", "adult": True,
     "contact_name": "张三", "phone": "13812345678", "email": "w@example.com"},
])
async def test_the_same_answers_sent_again_after_a_stalled_save_are_done_not_refused(service, profile):
    # The database stalled as it answered: the reply said "may not be saved", the
    # registration was saved; 确认 sent again said it had changed meanwhile.
    merchants = service.runtime.merchants
    first, outcome = await merchants.save_profile("o-again", profile, seen="")
    again, outcome_again = await merchants.save_profile("o-again", profile, seen="")
    assert (outcome, outcome_again) == ("registered", "registered") and again.profile() == first.profile()
    assert len(await merchants.repo.history("o-again")) == 1
    with pytest.raises(AccountRefused):  # other answers on a stale view are still refused
        await merchants.save_profile("o-again", {**profile, "phone": "13900000000"}, seen="")


async def test_export_includes_merchant(service):
    await register_enterprise(service, "o-exp")
    merchant = (await service.runtime.exports.document("o-exp"))["merchant"]
    assert {k: merchant[k] for k in ("entity_type", "entity_name", "credit_code", "contact_name", "phone", "email", "status")} == {
        "entity_type": "enterprise", "entity_name": "南宁市测试贸易有限公司", "credit_code": CODE,
        "contact_name": "王五", "phone": "13812345678", "email": "wangwu@example.com", "status": "pending_review",
    }
    assert (await service.runtime.exports.document("o-exp"))["dialog_drafts"] == []  # registered: no draft left


async def test_export_includes_an_unfinished_registration(service):
    # The draft (kept 7 days) holds names and phone numbers: the user's export shows it.
    await accepted(service, "o-half-done")
    await chat(service, "o-half-done", "注册", "企业", "南宁市测试贸易有限公司")
    [draft] = (await service.runtime.exports.document("o-half-done"))["dialog_drafts"]
    assert draft["dialog"] == "registration" and draft["answers"]["entity_name"] == "南宁市测试贸易有限公司"


async def test_the_export_page_shows_a_merchant_in_words_not_codes(service):
    # The page showed "dialog_drafts", the status history as JSON with 操作方 "user",
    # cited clauses as ["4.1"] and a customer-service notice's channel as "custom".
    from tornado.httpclient import AsyncHTTPClient

    await register_enterprise(service, "o-page")
    await chat(service, "o-page", "我上传的图片版权归谁", "修改资料", "修改")  # an open change: a draft
    import re

    reply = (await chat(service, "o-page", "导出我的数据"))[-1]
    url = service.url + re.search(r"/export/[A-Za-z0-9_-]+", reply).group()
    page = await AsyncHTTPClient().fetch(url, headers={"Accept": "text/html"})
    html = page.body.decode()
    shown = html[html.index("<section>"):html.index("完整数据（JSON）")]  # the tables, not the JSON carried
    for said in ("未完成的填写", "操作方：本人", "状态：待审核", "引用协议条款"):
        assert said in shown, said
    for code in ("dialog_drafts", "&quot;user&quot;", '[&quot;', "pending_review", "enterprise"):
        assert code not in shown, code


# -- admins' CLI ----------------------------------------------------------------------------------------


async def test_merchants_cli(tmp_path):
    from service.config import Config
    from service.runtime import Runtime
    from storage.embedded import EmbeddedServers

    embedded = EmbeddedServers(tmp_path).start()
    runtime = Runtime(Config(data_dir=tmp_path), embedded.url("mongo"), embedded.url("redis"))
    try:
        await runtime.prepare()
        from bot.consent import Origin

        for openid in ("o-cli", "o-co1", "o-co2"):  # registered after accepting, as chat and the API require
            await runtime.consents.accept(openid, Origin("official_account"))
        for openid in ("o-cli", "o-declined"):
            await runtime.merchants.save_profile(openid, {"entity_type": "individual", "entity_name": "张三", "contact_name": "张三", "phone": "13812345678"})
        await runtime.consents.decline("o-declined", Origin("official_account"))
        for openid, name in (("o-co1", "南宁市甲贸易有限公司"), ("o-co2", "南宁市乙贸易有限公司")):  # one code, two accounts
            await runtime.merchants.save_profile(openid, {"entity_type": "enterprise", "entity_name": name, "credit_code": CODE,
                                                          "contact_name": "王五", "phone": "13812345678"})
    finally:
        await runtime.close()
        embedded.stop()

    # With no service up, a command starts the embedded servers and stops them after.
    listed = run_cli("merchants", "list", "--data-dir", str(tmp_path))
    assert listed.returncode == 0 and "o-cli" in listed.stdout and "待审核" in listed.stdout
    assert not [p for p in Path("/proc").glob("[0-9]*") if _runs_in(p, tmp_path)]
    # The rest attach to servers kept up, as while a service runs (seconds a command less).
    embedded = EmbeddedServers(tmp_path).start()
    try:
        _merchants_cli_checks(tmp_path)
    finally:
        embedded.stop()


def _runs_in(proc: Path, data_dir: Path) -> bool:
    """Whether process ``proc`` (a /proc entry) names ``data_dir`` on its command line."""
    try:
        return str(data_dir).encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def _merchants_cli_checks(tmp_path) -> None:
    assert "没有符合条件" in run_cli("merchants", "list", "--status", "active", "--data-dir", str(tmp_path)).stdout

    # One who declined the agreement since registering is not approved (the notice would say 可以使用).
    declined = run_cli("merchants", "set-status", "o-declined", "active", "--reason", "资料齐全", "--data-dir", str(tmp_path))
    assert declined.returncode == 2 and "该用户目前不同意" in declined.stderr and "不能设为已生效" in declined.stderr
    ok = run_cli("merchants", "set-status", "o-cli", "active", "--reason", "资料齐全", "--data-dir", str(tmp_path))
    assert ok.returncode == 0 and "已生效" in ok.stdout and "也登记在" not in ok.stderr
    # A credit code on another account: said, as the console's page says it (approved unwarned).
    dup = run_cli("merchants", "set-status", "o-co2", "active", "--reason", "资料齐全", "--data-dir", str(tmp_path))
    assert dup.returncode == 0 and f"统一社会信用代码 {CODE} 也登记在另外 1 个账户上：o-co1" in dup.stderr, dup.stderr
    assert CODE in run_cli("merchants", "list", "--data-dir", str(tmp_path)).stdout
    bad = run_cli("merchants", "set-status", "o-cli", "pending_review", "--reason", "x", "--data-dir", str(tmp_path))
    assert bad.returncode == 2 and "不能从“已生效”改为“待审核”" in bad.stderr
    blank = run_cli("merchants", "set-status", "o-cli", "suspended", "--reason", "  ", "--data-dir", str(tmp_path))
    assert blank.returncode == 2 and "原因" in blank.stderr
    missing = run_cli("merchants", "set-status", "o-none", "active", "--reason", "x", "--data-dir", str(tmp_path))
    assert missing.returncode == 2 and "没有 openid" in missing.stderr
    # A reason too long for the merchant's notice is refused before anything changes
    # (it was stored, the notice refused, and a traceback printed).
    long = run_cli("merchants", "set-status", "o-cli", "suspended", "--reason", "多次发布违规内容。" * 160,
                   "--data-dir", str(tmp_path))
    assert long.returncode == 2 and "原因最多 500 个字" in long.stderr and "Traceback" not in long.stderr
    assert "已生效" in run_cli("merchants", "list", "--data-dir", str(tmp_path)).stdout
    for status, reason in (("suspended", "核实中"), ("closed", "商家申请")):
        assert run_cli("merchants", "set-status", "o-cli", status, "--reason", reason, "--data-dir", str(tmp_path)).returncode == 0
    lifted = run_cli("merchants", "set-status", "o-cli", "closed", "--reason", "申诉通过", "--data-dir", str(tmp_path))
    assert lifted.returncode == 0 and "商家 o-cli：已允许重新注册" in lifted.stdout


async def test_an_admin_closure_ends_an_open_registration_dialog(service):
    # The merchant is editing their profile in chat when an owner closes the
    # account: the dialog (holding the old answers) must not register it again.
    await register_enterprise(service, "o-edit")
    merchants = service.runtime.merchants
    await chat(service, "o-edit", "修改资料")
    assert await service.runtime.services.dialogs.load("o-edit") is not None
    await merchants.set_status("o-edit", "closed", "商家申请，由客服办理", by="admin:olga")
    assert await service.runtime.services.dialogs.load("o-edit") is None
    await service.wechat.ask("o-edit", "确认")
    assert (await merchants.get("o-edit")).status == "closed"
    assert (await merchants.get("o-edit")).credit_code is None


async def test_a_change_decided_on_an_old_status_is_refused(service):
    # An editor's 审核通过 decided on "pending_review" must not land as a
    # reinstatement after an owner's 暂停 (only owners reinstate).
    from bot.merchants import AccountRefused

    await register_enterprise(service, "o-race")
    merchants = service.runtime.merchants
    await merchants.set_status("o-race", "suspended", "资料待核实", by="admin:olga")
    with pytest.raises(AccountRefused) as refused:
        await merchants.set_status("o-race", "active", "审核通过", by="admin:ed", expected="pending_review")
    assert refused.value.code == "status_changed"
    assert (await merchants.get("o-race")).status == "suspended"


async def test_a_status_whose_history_insert_was_lost_is_still_in_the_history(service):
    # The status and its history entry are two writes; when the second one is
    # lost (MongoDB fails in between), the entry the status update carried is
    # written the next time the history is read.
    await register_enterprise(service, "o-lost")
    merchants = service.runtime.merchants
    await merchants.set_status("o-lost", "suspended", "资料待核实", by="admin:olga")
    history = service.runtime.db["merchant_status_history"]
    assert (await history.delete_one({"openid": "o-lost", "status": "suspended"})).deleted_count == 1
    entries = await merchants.repo.history("o-lost")
    assert [(e.status, e.reason, e.by) for e in entries][-1] == ("suspended", "资料待核实", "admin:olga")
    assert await history.count_documents({"openid": "o-lost"}) == len(entries) == 2
    assert len(await merchants.repo.history("o-lost")) == 2  # repaired once, not again


async def test_closing_while_suspended_warns_first_and_never_invites_a_refused_registration(service):
    await register_enterprise(service, "o-barred")
    await service.runtime.merchants.set_status("o-barred", "suspended", "资料待核实", by="admin")
    confirm = await service.wechat.ask("o-barred", "注销账户")
    assert "暂停期间注销后不能自行重新注册" in confirm and "确认注销" in confirm
    closed = await service.wechat.ask("o-barred", "确认注销")
    assert "已注销" in closed and "不能自行重新注册" in closed and "回复“注册”" not in closed
    overview = await service.wechat.ask("o-barred", "我的账户")
    assert "不能自行重新注册" in overview and "回复“注册”" not in overview
    # 注册 says so at once instead of running the whole dialog into a refusal.
    refused = await service.wechat.ask("o-barred", "注册")
    assert refused == texts.REREGISTRATION_BARRED
    asked = await service.wechat.ask("o-barred", "我想重新注册")  # a question: its hint says the same
    assert texts.REREGISTRATION_BARRED in asked and texts.REGISTRATION_HINT not in asked
    assert await service.runtime.services.dialogs.load("o-barred") is None
    assert "不能自行重新注册" in await service.wechat.ask("o-barred", "注销账户")
    # An account closed in good standing is still invited back.
    await register_enterprise(service, "o-good")
    asked = await service.wechat.ask("o-good", "已经注册了怎么修改联系人")
    assert texts.REGISTERED_HINT in asked and texts.REGISTRATION_HINT not in asked
    await service.wechat.ask("o-good", "注销账户")
    assert "回复“注册”" in await service.wechat.ask("o-good", "确认注销")
    assert texts.PROMPT_ENTITY_TYPE in await service.wechat.ask("o-good", "注册")


async def test_a_closure_confirmed_after_a_suspension_is_asked_again_with_its_warning(service):
    # Asked while active, suspended before 确认注销: closed and barred, never warned.
    await register_enterprise(service, "o-late-bar")
    await service.runtime.merchants.set_status("o-late-bar", "active", "资料齐全", by="admin")
    assert "暂停期间" not in await service.wechat.ask("o-late-bar", "注销账户")
    await service.runtime.merchants.set_status("o-late-bar", "suspended", "虚假宣传", by="admin")
    again = await service.wechat.ask("o-late-bar", "确认注销")
    assert again.startswith("尚未注销") and "已暂停" in again and "暂停期间注销后不能自行重新注册" in again, again
    assert (await service.runtime.merchants.get("o-late-bar")).status == "suspended"
    closed = await service.wechat.ask("o-late-bar", "确认注销")  # warned now: this one counts
    assert "已注销" in closed and (await service.runtime.merchants.get("o-late-bar")).status == "closed"


async def test_changes_to_a_saved_record_left_unfinished_are_offered_back(service):
    # 修改资料 → a new phone → left at the summary; the dialog expired; 修改资料 showed the old phone.
    await register_enterprise(service, "o-amend-later")
    await chat(service, "o-amend-later", "修改资料", "修改", "手机", "13911112222")
    await service.runtime.services.dialogs.clear("o-amend-later")  # the dialog's idle expiry; its draft stays
    offer = await service.wechat.ask("o-amend-later", "修改资料")
    assert "未完成的商家资料修改" in offer and "13911112222" in offer and "从当前资料重新修改" in offer, offer
    summary = await service.wechat.ask("o-amend-later", "继续")
    assert "13911112222" in summary and "请核对您的商家资料" in summary, summary
    assert "资料已更新" in await service.wechat.ask("o-amend-later", "确认")
    assert (await service.runtime.merchants.get("o-amend-later")).phone == "13911112222"
    # 重新开始: from the record as it is, not an empty registration.
    await chat(service, "o-amend-later", "修改资料", "修改", "手机", "13733334444")
    await service.runtime.services.dialogs.clear("o-amend-later")
    await service.wechat.ask("o-amend-later", "修改资料")
    again = await service.wechat.ask("o-amend-later", "重新开始")
    assert "请核对您的商家资料" in again and "13911112222" in again and "13733334444" not in again, again


async def test_my_account_says_why_an_admin_closed_the_account(service):
    # The reason reached the user only in the notice; 我的账户 said "已注销" and nothing more.
    await register_enterprise(service, "o-ended")
    await service.runtime.merchants.set_status("o-ended", "closed", "多次发布违规内容", by="admin:olga")
    overview = await service.wechat.ask("o-ended", "我的账户")
    assert "注销原因：多次发布违规内容" in overview, overview
    why = await service.wechat.ask("o-ended", "为什么被封号了")  # not "returned for correction"
    assert "已由微拓注销" in why and "多次发布违规内容" in why and "退回修改" not in why, why
    await register_enterprise(service, "o-left")
    await service.wechat.ask("o-left", "注销账户")
    await service.wechat.ask("o-left", "确认注销")
    assert "注销原因" not in await service.wechat.ask("o-left", "我的账户")  # their own: nothing to explain


async def test_the_owner_can_let_an_account_closed_while_suspended_register_again(service, emulator):
    # Closed while suspended, its user was told to contact us, and nobody could
    # do anything: a dead end. The owner's 允许重新注册 lifts the bar, once.
    merchants = service.runtime.merchants
    await register_enterprise(service, "o-appeal")
    await merchants.set_status("o-appeal", "suspended", "资料待核实", by="admin:olga")
    closed = await merchants.set_status("o-appeal", "closed", "商家申请注销", by="admin:olga")
    assert await merchants.moves(closed) == [("closed", "允许重新注册")]
    assert await service.wechat.ask("o-appeal", "注册") == texts.REREGISTRATION_BARRED
    await merchants.set_status("o-appeal", "closed", "申诉核实无误", by="admin:olga")
    await service.runtime.worker(concurrency=2).run_until_idle(30)
    told = [m["body"]["text"]["content"] for m in await emulator.messages("o-appeal") if m["msgtype"] == "text"]
    assert any("现已允许重新注册" in t and "申诉核实无误" in t for t in told)
    reopened = await merchants.get("o-appeal")
    assert reopened.status == "closed" and await merchants.moves(reopened) == []
    assert texts.PROMPT_ENTITY_TYPE in await service.wechat.ask("o-appeal", "注册")
    await service.wechat.ask("o-appeal", "取消")
    # Nothing to lift on an account closed in good standing; the refusal says so.
    await register_enterprise(service, "o-fine")
    await merchants.set_status("o-fine", "closed", "商家申请注销", by="admin:olga")
    with pytest.raises(AccountRefused) as refused:
        await merchants.set_status("o-fine", "closed", "x", by="admin:olga")
    assert "无需解除限制" in refused.value.message and "允许的变更：无（账户已注销）" in refused.value.message
    # A suspended account lists only the way back it has (and closure).
    await register_enterprise(service, "o-back")
    await merchants.set_status("o-back", "active", "资料齐全", by="admin:olga")
    await merchants.set_status("o-back", "suspended", "滥用", by="admin:olga")
    assert await merchants.moves(await merchants.get("o-back")) == [("active", "恢复"), ("closed", "注销")]
    with pytest.raises(AccountRefused) as refused:
        await merchants.set_status("o-back", "suspended", "x", by="admin:olga")
    assert refused.value.code == "no_change" and "已经是“已暂停”" in refused.value.message


async def test_changing_the_profile_asks_for_consent_first(service):
    # After 不同意, 修改资料 ran the whole dialog and refused only at 确认 (the API refuses at once).
    await register_enterprise(service, "o-undecided")
    assert "已记录" in await service.wechat.ask("o-undecided", "不同意")
    asked = await service.wechat.ask("o-undecided", "修改资料")
    assert "需要您先同意" in asked and await service.runtime.services.dialogs.load("o-undecided") is None
    after = await service.wechat.ask("o-undecided", "同意")
    assert "已记录" in after and "修改" in after.split("已记录", 1)[1]  # then it carries on


async def test_a_registration_returned_for_correction_is_told_what_to_change(service, emulator):
    # A reviewer could only approve, suspend or close: no way to ask for a fix.
    merchants = service.runtime.merchants
    await register_enterprise(service, "o-fixme")
    pending = await merchants.get("o-fixme")
    assert ("pending_review", "退回修改") in await merchants.moves(pending)
    await merchants.set_status("o-fixme", "pending_review", "名称与营业执照不一致", by="admin:eddie")
    await service.runtime.worker(concurrency=2).run_until_idle(30)
    told = [m["body"]["text"]["content"] for m in await emulator.messages("o-fixme") if m["msgtype"] == "text"]
    assert any("审核意见：名称与营业执照不一致" in t and "修改资料" in t for t in told), told
    assert (await merchants.get("o-fixme")).status == "pending_review"
    # 我的账户 said only "我们会尽快审核": a merchant who missed the notice waited for ever.
    account = await service.wechat.ask("o-fixme", "我的账户")
    assert "退回修改" in account and "名称与营业执照不一致" in account and "修改资料" in account, account
    # Asked in the user's words: their record answers ("not covered" before).
    why = await service.wechat.ask("o-fixme", "为什么被退回了？")
    assert "名称与营业执照不一致" in why and "修改资料" in why, why
    assert "修改" in await service.wechat.ask("o-fixme", "修改资料")  # and they can
    # 确认 with nothing changed is no correction: the reason still stands, the dialog stays open.
    unchanged = await service.wechat.ask("o-fixme", "确认")
    assert "尚未按审核意见修改" in unchanged and "名称与营业执照不一致" in unchanged, unchanged
    assert await merchants.returned_reason("o-fixme") == "名称与营业执照不一致"
    replies = await chat(service, "o-fixme", "修改", "2", "南宁市测试贸易有限公司（更正）", "确认")
    assert "重新提交审核" in replies[-1], replies[-1]
    history = await merchants.repo.history("o-fixme")
    assert [(e.status, e.by, e.reason) for e in history[-2:]] == [
        ("pending_review", "admin:eddie", "名称与营业执照不一致"), ("pending_review", "user", "按退回意见修改资料，重新提交审核")]
    account = await service.wechat.ask("o-fixme", "我的账户")
    assert "退回修改" not in account and "我们会尽快审核" in account, account


async def test_reinstating_returns_to_the_status_the_suspension_interrupted(service, emulator):
    # Suspended while pending review: reinstating must not skip the review.
    from bot.merchants import AccountRefused

    await register_enterprise(service, "o-unreviewed")
    merchants = service.runtime.merchants
    await merchants.set_status("o-unreviewed", "suspended", "调查中", by="admin")
    assert [to for to, _ in await merchants.moves(await merchants.get("o-unreviewed"))] == ["pending_review", "closed"]
    with pytest.raises(AccountRefused) as refused:
        await merchants.set_status("o-unreviewed", "active", "调查结束", by="admin")
    assert refused.value.code == "bad_transition" and "待审核" in refused.value.message
    assert (await merchants.get("o-unreviewed")).status == "suspended"
    await merchants.set_status("o-unreviewed", "pending_review", "调查结束", by="admin")
    assert (await merchants.get("o-unreviewed")).status == "pending_review"
    # An approved account goes back to active, and not to review.
    await merchants.set_status("o-unreviewed", "active", "审核通过", by="admin")
    await merchants.set_status("o-unreviewed", "suspended", "违规", by="admin")
    assert [to for to, _ in await merchants.moves(await merchants.get("o-unreviewed"))] == ["active", "closed"]
    with pytest.raises(AccountRefused) as refused:
        await merchants.set_status("o-unreviewed", "pending_review", "申诉", by="admin")
    assert "跳过审核" not in refused.value.message  # nothing skips review here (it said so)
    await merchants.set_status("o-unreviewed", "active", "申诉通过", by="admin")
    await service.runtime.worker(concurrency=2).run_until_idle(30)
    told = [m["body"]["text"]["content"] for m in await emulator.messages("o-unreviewed") if m["msgtype"] == "text"]
    assert any("已恢复" in t and "等待审核" in t for t in told)


async def test_cancelling_a_profile_change_keeps_the_profile_and_control_words_are_no_answers(service):
    await register_enterprise(service, "o-amend")
    await chat(service, "o-amend", "修改资料", "修改")
    # "፩" is a digit to str.isdigit() and no number to int(): asked again, no fault.
    assert "请回复 1 到 6 之间的编号" in await service.wechat.ask("o-amend", "፩")
    await chat(service, "o-amend", "联系人")
    refused = await service.wechat.ask("o-amend", "修改")  # at the contact-name step
    assert "是操作指令，不能作为联系人" in refused
    # 确认 there keeps the name it shows (当前填写), not a contact called 确认.
    kept = await service.wechat.ask("o-amend", "确认")
    assert "联系人：王五" in kept and "是操作指令" not in kept, kept
    cancelled = await service.wechat.ask("o-amend", "取消")
    assert "已取消修改" in cancelled and "保持不变" in cancelled and "没有保存" not in cancelled
    assert (await service.runtime.merchants.get("o-amend")).contact_name == "王五"
    # A new registration cancelled is still a registration cancelled.
    await accepted(service, "o-new-cancel")
    await chat(service, "o-new-cancel", "注册", "企业")
    assert "已取消商家注册" in await service.wechat.ask("o-new-cancel", "取消")
    # A merchant who left a profile change unfinished is not told to 注册.
    await chat(service, "o-amend", "修改资料", "修改", "联系人")
    await service.runtime.redis.delete(key("dialog", "o-amend"))
    assert texts.UNFINISHED_REGISTRATION not in await service.wechat.ask("o-amend", "今天天气怎么样")


async def test_confirming_the_age_with_the_word_in_the_prompt_is_yes(service):
    await accepted(service, "o-adult")
    replies = await chat(service, "o-adult", "注册", "个人", "张三", "确认")
    assert replies[-1].startswith(texts.PROMPT_CONTACT_NAME), replies[-1]


async def test_back_after_changing_the_entity_type_never_reaches_an_incomplete_summary(service):
    # 修改 → 主体类型 → 企业, then 上一步 twice used to show the summary with the
    # company's name and credit code unanswered, and 确认 saved it so.
    await accepted(service, "o-flip")
    await chat(service, "o-flip", "注册", "个人", "张三", "是", "李四", "13812345678", "跳过")
    replies = await chat(service, "o-flip", "修改", "1", "企业", "上一步", "上一步", "确认")
    assert not any("（未填写）" in r and "统一社会信用代码" in r for r in replies), replies
    assert await service.runtime.merchants.get("o-flip") is None  # nothing saved incomplete
    # Answering what is missing reaches the summary, and 确认 saves a whole record.
    replies = await chat(service, "o-flip", "南宁市测试贸易有限公司", CODE)
    assert "统一社会信用代码：" + CODE in replies[-1] and "确认" in replies[-1]
    assert "已提交" in await service.wechat.ask("o-flip", "确认")
    merchant = await service.runtime.merchants.get("o-flip")
    assert (merchant.entity_type, merchant.entity_name, merchant.credit_code) == ("enterprise", "南宁市测试贸易有限公司", CODE)


async def test_back_skips_steps_that_no_longer_apply(service):
    await accepted(service, "o-back")
    await chat(service, "o-back", *ENTERPRISE)
    replies = await chat(service, "o-back", "修改", "1", "个人", "维拉", "是", *["上一步"] * 8)
    assert not any(r.startswith(texts.PROMPT_CREDIT_CODE) for r in replies), replies  # not an individual's question


async def test_back_after_an_edit_walks_the_form_not_between_the_summary_and_the_item(service):
    # 修改 → 2 (名称) → a new name, then 上一步 went to the name, and 上一步 again to the summary, for ever.
    await accepted(service, "o-walk")
    await chat(service, "o-walk", *ENTERPRISE)
    replies = await chat(service, "o-walk", "修改", "2", "南宁市新名称贸易有限公司", "上一步", "上一步", "上一步")
    assert "南宁市新名称贸易有限公司" in replies[2] and "确认" in replies[2]  # the summary
    assert replies[3].startswith(texts.PROMPT_EMAIL), replies[3]  # the form's last step
    assert replies[4].startswith(texts.PROMPT_PHONE) and replies[5].startswith(texts.PROMPT_CONTACT_NAME), replies[4:]
    # 确认 at a step that shows its answer (当前填写) keeps it (it was "确认是操作指令，不能作为联系人姓名").
    kept = await chat(service, "o-walk", "确认", "确认", "确认", "确认")
    assert kept[0].startswith(texts.PROMPT_PHONE) and kept[1].startswith(texts.PROMPT_EMAIL), kept
    assert "南宁市新名称贸易有限公司" in kept[2] and "已提交" in kept[3], kept
    assert (await service.runtime.merchants.get("o-walk")).contact_name == "王五"


async def test_control_words_with_punctuation_are_still_control_words(service):
    await accepted(service, "o-punct")
    replies = await chat(service, "o-punct", "注册", "企业", "上一步。")
    assert replies[-1].startswith(texts.PROMPT_ENTITY_TYPE)  # went back, not a company called 上一步。
    reply = await service.wechat.ask("o-punct", "取消。")
    assert reply.startswith(texts.dialog_cancelled(texts.REGISTRATION_TITLE)[:8])
    assert await service.runtime.services.dialogs.load("o-punct") is None


async def test_what_people_type_to_leave_or_go_back_is_no_name(service):
    await accepted(service, "o-leave")
    replies = await chat(service, "o-leave", "注册", "个人", "取消注册")
    assert replies[-1].startswith(texts.dialog_cancelled(texts.REGISTRATION_TITLE)[:8])
    assert await service.runtime.services.dialogs.load("o-leave") is None
    replies = await chat(service, "o-leave", "注册", "重新开始", "个人", "返回")
    assert replies[-1].startswith(texts.PROMPT_ENTITY_TYPE)  # back to step 1, not a person called 返回
    replies = await chat(service, "o-leave", "企业", "南宁市测试贸易有限公司", "重新填写")
    assert replies[-1].startswith(texts.DIALOG_RESTARTED) and texts.PROMPT_ENTITY_TYPE in replies[-1]
    assert (await service.runtime.services.dialogs.load("o-leave")).data["answers"] == {}
    assert (await chat(service, "o-leave", "算了"))[-1].startswith(texts.dialog_cancelled(texts.REGISTRATION_TITLE)[:8])
    assert await service.runtime.merchants.get("o-leave") is None


async def test_answer_words_with_the_punctuation_a_keyboard_adds(service):
    await accepted(service, "o-words")
    replies = await chat(service, "o-words", "注册", "个人。", "张三", "是的！", "李四", "13812345678", "跳过。")
    assert "第 2 步" in replies[1] and replies[3].startswith(texts.PROMPT_CONTACT_NAME)
    assert "邮箱：（未填写）" in replies[-1]
    replies = await chat(service, "o-words", "修改", "主体类型", "企业！")
    assert replies[-1].startswith(unnumbered(texts.prompt_entity_name("enterprise")))  # 企业！ taken: the name next
    await accepted(service, "o-minor")
    assert (await chat(service, "o-minor", "注册", "个人", "张三", "否。"))[-1] == texts.UNDERAGE
    # A code, a number or an address sent with a full stop: the value, not "19 位" or "只能包含数字".
    await accepted(service, "o-stops")
    replies = await chat(service, "o-stops", "注册", "企业", "南宁市青秀区示例科技有限公司", "91450103MA5L2K3R0W。",
                         "李四", "13812345678。", "Li.Si@Example.COM。")
    assert "统一社会信用代码：91450103MA5L2K3R0W" in replies[-1] and "手机号码：13812345678" in replies[-1], replies[-1]
    assert "邮箱：li.si@example.com" in replies[-1], replies[-1]


async def test_the_accounts_own_words_are_no_names(service):
    # 确认注销 and the menu's labels typed at a name step were stored as the name.
    await accepted(service, "o-own")
    for word in ("查看条款", "微拓官网。"):
        replies = await chat(service, "o-own", "注册", "个人", word)
        assert "是公众号的指令或菜单项，不是姓名" in replies[-1] and "第 2 步" in replies[-1], replies[-1]
        await chat(service, "o-own", "取消")
    replies = await chat(service, "o-own", "注册", "个人", "张三", "是", "确认注销")
    assert "不能作为这一步的内容" in replies[-1] and "第 4 步" in replies[-1], replies[-1]
    with pytest.raises(Invalid, match="不是联系人姓名"):  # the API's path, which has no command words
        parse_contact_name("确认注销")


async def test_a_photo_inside_the_dialog_is_no_empty_answer(service):
    await accepted(service, "o-photo")
    await chat(service, "o-photo", "注册", "企业")
    image = message_xml("o-photo", "image", "<PicUrl>http://x/licence.jpg</PicUrl><MediaId>m1</MediaId>")
    reply = service.wechat.reply(await service.wechat.post(image))["Content"]
    assert reply.startswith(texts.DIALOG_TEXT_ONLY) and "第 2 步" in reply
    assert "0 个字" not in reply


async def test_an_incomplete_profile_is_refused_by_the_account_rules(service):
    from bot.merchants import IncompleteProfile

    with pytest.raises(IncompleteProfile) as refused:
        await service.runtime.merchants.save_profile(
            "o-half", {"entity_type": "enterprise", "entity_name": None, "contact_name": "王五", "phone": "13812345678"}
        )
    assert "名称" in refused.value.message and "统一社会信用代码" in refused.value.message
    assert await service.runtime.merchants.get("o-half") is None


async def test_confirming_a_closure_already_done_elsewhere_says_so(service):
    await register_enterprise(service, "o-twice")
    assert "确认注销" in await service.wechat.ask("o-twice", "注销账户")
    await service.runtime.merchants.set_status("o-twice", "closed", "小程序中注销", by="user")
    reply = await service.wechat.ask("o-twice", "确认注销")
    assert reply == texts.ALREADY_CLOSED, reply


async def test_my_account_says_when_consent_was_withdrawn(service):
    await register_enterprise(service, "o-nocon")
    await service.runtime.merchants.set_status("o-nocon", "active", "资料齐全", by="admin")
    assert texts.MERCHANT_STATUS_HELP["active"] in await service.wechat.ask("o-nocon", "我的账户")
    await service.wechat.ask("o-nocon", "撤回同意")
    overview = await service.wechat.ask("o-nocon", "我的账户")
    assert texts.MERCHANT_STATUS_HELP["active"] not in overview  # "您可以使用微拓的商家服务" would contradict it
    assert texts.ACCOUNT_WITHOUT_CONSENT["withdrawn"] in overview
    await service.wechat.ask("o-nocon", "同意")
    assert texts.MERCHANT_STATUS_HELP["active"] in await service.wechat.ask("o-nocon", "我的账户")


async def test_a_chat_consent_record_carries_the_followers_unionid(service):
    await service.runtime.followers.set_unionid("o-union", "u-union-1")
    await service.wechat.ask("o-union", "同意")
    [record] = await service.runtime.ledger.history("o-union")
    assert (record.action, record.unionid) == ("accept", "u-union-1")


async def test_a_profile_changed_elsewhere_during_the_dialog_is_not_overwritten(service):
    # 修改资料 in chat while the mini-program changes the phone: confirming the
    # chat's answers silently undid the mini-program's change.
    await register_enterprise(service, "o-race")
    await chat(service, "o-race", "修改资料", "修改", "邮箱")
    merchants = service.runtime.merchants
    profile = (await merchants.get("o-race")).profile() | {"phone": "13999999999"}
    await merchants.save_profile("o-race", profile)  # what PUT /me/registration does
    await service.wechat.ask("o-race", "w@example.com")
    refused = await service.wechat.ask("o-race", "确认")
    assert "有了变化" in refused and "未保存" in refused
    merchant = await merchants.get("o-race")
    assert (merchant.phone, merchant.email) == ("13999999999", "wangwu@example.com")
    # Started again from the record as it is now, the change goes through.
    await chat(service, "o-race", "修改资料", "修改", "邮箱", "w@example.com")
    assert "资料已更新" in await service.wechat.ask("o-race", "确认")
    assert (await merchants.get("o-race")).email == "w@example.com"


async def test_a_registration_made_elsewhere_during_the_dialog_is_not_overwritten(service):
    await accepted(service, "o-race2")
    await chat(service, "o-race2", *ENTERPRISE)
    await service.runtime.merchants.save_profile("o-race2", {
        "entity_type": "individual", "entity_name": "张三", "contact_name": "张三", "phone": "13912345678"})
    assert "有了变化" in await service.wechat.ask("o-race2", "确认")
    assert (await service.runtime.merchants.get("o-race2")).entity_type == "individual"


async def test_starting_over_from_an_old_draft_is_not_refused_as_changed_elsewhere(service):
    # A draft kept the record's stamp of its day; 重新开始 (a new registration,
    # from the record as it is now) was refused as "changed elsewhere".
    await accepted(service, "o-again")
    await chat(service, "o-again", "注册", "企业", "南宁市测试贸易有限公司")  # a draft, based on no record
    await service.runtime.redis.delete(key("dialog", "o-again"))  # abandoned
    await service.runtime.merchants.save_profile("o-again", {   # registered meanwhile (the mini-program)
        "entity_type": "individual", "entity_name": "张三", "contact_name": "张三", "phone": "13912345678"})
    await service.runtime.merchants.set_status("o-again", "closed", "用户申请注销", by="user")
    assert "未完成的商家注册" in await service.wechat.ask("o-again", "注册")
    await service.wechat.ask("o-again", "重新开始")
    await chat(service, "o-again", *ENTERPRISE[1:])
    assert "已提交" in await service.wechat.ask("o-again", "确认")
    assert (await service.runtime.merchants.get("o-again")).entity_type == "enterprise"


async def test_commands_with_an_argument_work_while_a_closure_waits_for_its_confirmation(service):
    await register_enterprise(service, "o-closing")
    assert "确认注销" in await service.wechat.ask("o-closing", "注销账户")
    section = await service.wechat.ask("o-closing", "条款 2")
    assert "微拓帐户" in section  # it said "请回复“确认注销”或“取消”"
    assert (await service.runtime.merchants.get("o-closing")).status == "pending_review"
    assert "已注销" in await service.wechat.ask("o-closing", "确认注销")


async def test_an_unfollow_closes_an_open_dialog_and_registration_offers_to_resume(service):
    # Re-followed mid-registration: the welcome said nothing of the dialog and
    # the next message was silently stored as the step's answer.
    from tests.wx import event_xml

    openid = "o-refollow"
    await accepted(service, openid)
    await chat(service, openid, "注册", "企业", "南宁市测试贸易有限公司")
    await service.wechat.post(event_xml(openid, "unsubscribe"))
    await service.wechat.post(event_xml(openid, "subscribe"))
    assert await service.runtime.services.dialogs.load(openid) is None
    await service.wechat.ask(openid, "我上传的图片版权归谁？")  # a question again, not the credit code
    resumed = await service.wechat.ask(openid, "注册")
    assert "南宁市测试贸易有限公司" in resumed  # the draft is offered


async def test_register_tapped_during_registration_before_consent_goes_on_with_the_dialog(service):
    # 商家注册 tapped while the dialog was open and consent declined: after 同意 the
    # saved 注册 ran inside the dialog and was refused as an answer to step 2.
    await accepted(service, "o-tap")
    await chat(service, "o-tap", "注册", "企业", "不同意")
    prompt = service.wechat.reply(await service.wechat.post(event_xml("o-tap", "CLICK", "REGISTER")))["Content"]
    assert "同意" in prompt
    reply = await service.wechat.ask("o-tap", "同意")
    assert reply.startswith("已记录：您同意了") and "不能作为这一步的内容" not in reply, reply
    assert "商家注册还没有完成" in reply, reply
    replies = await chat(service, "o-tap", "南宁市青秀区示例科技有限公司")
    assert "第 3 步" in replies[-1], replies[-1]  # the dialog went on where it was


async def test_confirm_close_with_no_closure_asked_says_so(service):
    # It went to the agreement's Q&A (没有找到能回答这个问题的条款).
    assert await service.wechat.ask("o-unasked", "确认注销") == texts.NO_CLOSURE_ASKED
    await register_enterprise(service, "o-asked")
    assert "确认注销" in await service.wechat.ask("o-asked", "注销账户")
    await service.wechat.ask("o-asked", "确认注销")
    assert (await service.runtime.merchants.get("o-asked")).status == "closed"
