"""Validation of what merchants type, in one place for chat, API, admin and CLI.

Each ``parse_*`` function takes raw user text and returns the normalised
value, or raises :class:`Invalid` with a Chinese message that says what was
wrong and gives an example.
"""

from __future__ import annotations

import re
import unicodedata

from bot import texts
from bot.errors import BotError
from bot.traditional import simplified


class Invalid(BotError):
    """A value that fails validation; ``field`` names it (for the API's error)."""

    kind = "invalid"
    code = "invalid_field"

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


#: Punctuation that ends a statement, not a question ("取消。", "谢啦！"): a word
#: sent with it is still that word where a question must stay a question.
STATEMENT_END = "。.!！~～ "
#: Punctuation a phone keyboard adds after a word ("取消。", "谢啦！", "…做广告吗？").
TRAILING_PUNCTUATION = STATEMENT_END + "?？,，、"


def fold(text: str) -> str:
    """Full-width to half-width, surrounding blanks removed."""
    return unicodedata.normalize("NFKC", text).strip()


# -- entity type -------------------------------------------------------------------

ENTITY_TYPES = {"individual": "个人", "enterprise": "企业"}
_ENTITY_WORDS = {"个人": "individual", "企业": "enterprise", "公司": "enterprise", "individual": "individual", "enterprise": "enterprise"}


def answer_word(text: str) -> str:
    """A one-word answer as typed on a phone ("个人。", "是的！"): folded,
    lower case, without the punctuation a keyboard adds, in Simplified
    characters (個人 is 个人)."""
    return simplified(fold(text).strip(TRAILING_PUNCTUATION).lower())


def is_entity_type(text: str) -> bool:
    """Whether ``text`` answers the entity-type step (个人, 企业 …)."""
    return answer_word(text) in _ENTITY_WORDS


def parse_entity_type(text: str) -> str:
    word = answer_word(text)
    value = _ENTITY_WORDS.get(word)
    if value is None:
        if word in ("个体", "个体户", "个体工商户", "工商户"):
            raise Invalid(texts.FORM_INDIVIDUAL_BUSINESS, "entity_type")
        raise Invalid("主体类型只能是“个人”或“企业”。", "entity_type")
    return value


# -- names ---------------------------------------------------------------------------


def _name(text: str, field: str, label: str, low: int, high: int, example: str) -> str:
    # What a phone keyboard adds after a word (张三。 张三~), not "." (ACME Co., Ltd.).
    value = without_label(re.sub(r"\s+", " ", fold(text)).rstrip("。!！~～ "))
    if re.search(r"[\u4e00-\u9fff]", value):
        # A Chinese name's brackets are full-width, as on the business licence
        # (南宁市微拓软件服务有限公司（新）): NFKC made them ASCII.
        value = value.replace("(", "（").replace(")", "）")
    if not low <= len(value) <= high:
        raise Invalid(f"{label}应为 {low} 到 {high} 个字，您输入了 {len(value)} 个字。例如：{example}", field)
    if any(unicodedata.category(c).startswith("C") for c in value):
        raise Invalid(f"{label}含有无法识别的字符，请重新输入。例如：{example}", field)
    if any(unicodedata.category(c) == "So" for c in value) or WECHAT_STICKER.search(value):  # emoji, pictographs
        raise Invalid(f"{label}不能包含表情或图形符号，请按证件上的写法输入。例如：{example}", field)
    if not any(c.isalpha() for c in value):
        raise Invalid(f"{label}需要包含文字，不能只有数字或符号。例如：{example}", field)
    odd = _NOT_IN_NAMES.search(value)
    if odd:  # markup, and a spreadsheet's formulas (=HYPERLINK(…)): on no licence or ID card
        what = "网页标记（<…>）" if odd.group().startswith("<") else f"“{odd.group()}”等符号"
        raise Invalid(f"{label}不能包含{what}，请按证件上的写法输入。例如：{example}", field)
    # A question typed at this step, or the credit code sent again, is no name.
    # Not by its first words: 如何文化, 怎么样餐饮 are companies' names.
    plain = simplified(value).lower()
    if ("?" in value or value.endswith(_QUESTION_ENDS) or plain.rstrip(TRAILING_PUNCTUATION).endswith(_ASKING_ENDS)
            or _QUESTION_PHRASES.search(plain)
            # Not a business's name by its ending: 南宁市哪吒手机维修有限公司 holds 哪 and 手机.
            or (_ABOUT_THE_FORM.search(plain) and _ASKING.search(plain) and not _BUSINESS_NAME.search(plain))):
        raise Invalid(f"这看起来是一个问题，不是{label}。请输入{label}，例如：{example}", field)
    if _ABOUT_THE_FORM.search(plain) and _SPEAKING.match(plain) and not _BUSINESS_NAME.search(plain):
        # 我们还没有营业执照, 没有联系人; not 我爱填字游戏工作室, which ends as a business's name does.
        raise Invalid(f"“{value}”看起来是一句话，不是{label}。请只输入{label}本身，例如：{example}", field)
    if plain == texts.EXAMPLE_COMPANY_NAME:
        raise Invalid(f"“{value}”是微拓自己的公司名称（提示中的示例），请输入您的{label}。", field)
    if plain in _BARE_COMPANY_WORDS:
        raise Invalid(f"请输入完整的{label}（与证件一致），不能只写“{value}”。例如：{example}", field)
    if plain in _NOT_NAMES:
        raise Invalid(f"“{value}”不是{label}。请输入{label}，例如：{example}", field)
    if len(value) >= 3 and len(set(plain.replace(" ", ""))) == 1:  # aaaa, 哈哈哈哈: a key held down
        raise Invalid(f"“{value}”不像是{label}。请按证件上的写法输入，例如：{example}", field)
    if _SENTENCE_START.match(plain):
        raise Invalid(f"“{value}”看起来是一句话，不是{label}。请只输入{label}本身，例如：{example}", field)
    if re.fullmatch(r"[0-9A-Z]{18}", value.upper()) and sum(c.isdigit() for c in value) >= 8:
        raise Invalid(f"这看起来是统一社会信用代码，不是{label}。请输入{label}，例如：{example}", field)
    if simplified(value.rstrip(TRAILING_PUNCTUATION).rstrip("吧啊呀了嘛")) in _BOT_WORDS:  # 撤回同意吧
        raise Invalid(f"“{value}”是公众号的指令或菜单项，不是{label}。请输入{label}，例如：{example}", field)
    return value


#: WeChat's own stickers, which reach us as their names in brackets ([微笑], [捂脸]).
WECHAT_STICKER = re.compile(r"\[(" + "|".join((
    "微笑", "撇嘴", "色", "发呆", "得意", "流泪", "害羞", "闭嘴", "睡", "大哭", "尴尬", "发怒", "调皮", "呲牙", "惊讶",
    "难过", "酷", "冷汗", "抓狂", "吐", "偷笑", "愉快", "可爱", "白眼", "傲慢", "饥饿", "困", "惊恐", "流汗", "憨笑",
    "悠闲", "大兵", "奋斗", "咒骂", "疑问", "嘘", "晕", "疯了", "折磨", "衰", "骷髅", "敲打", "再见", "擦汗", "抠鼻",
    "鼓掌", "糗大了", "坏笑", "左哼哼", "右哼哼", "哈欠", "鄙视", "委屈", "快哭了", "阴险", "亲亲", "吓", "可怜",
    "菜刀", "西瓜", "啤酒", "篮球", "乒乓", "咖啡", "饭", "猪头", "玫瑰", "凋谢", "嘴唇", "示爱", "爱心", "心碎",
    "蛋糕", "闪电", "炸弹", "刀", "足球", "瓢虫", "便便", "月亮", "太阳", "礼物", "拥抱", "强", "弱", "握手", "胜利",
    "抱拳", "勾引", "拳头", "差劲", "爱你", "NO", "OK", "爱情", "飞吻", "跳跳", "发抖", "怄火", "转圈", "磕头",
    "回头", "跳绳", "投降", "激动", "乱舞", "献吻", "左太极", "右太极", "嘿哈", "捂脸", "奸笑", "机智", "皱眉", "耶",
    "吃瓜", "加油", "汗", "天啊", "Emm", "社会社会", "旺柴", "好的", "打脸", "哇", "翻白眼", "666", "让我看看",
    "叹气", "苦涩", "裂开", "红包", "發", "福", "烟花", "爆竹", "猪", "庆祝", "合十", "破涕为笑", "笑脸", "生病",
    "脸红", "恐惧", "失望", "无语", "Smile", "Grimace", "Drool", "Scowl", "Chill", "Sob", "Shy", "Silent",
    "Sleep", "Cry", "Awkward", "Angry", "Tongue", "Grin", "Surprise", "Frown", "Blush", "Facepalm", "Smirk",
    "Wow", "Sigh", "Hey", "Yeah!", "ThumbsUp", "Sun", "Moon", "Rose", "Heart",
)) + r")\]")

#: Markup (<script>) and what starts a spreadsheet's formula, which no licence
#: or ID card holds; names do hold %, #, @, ", + (100%鲜榨, C#编程, +1健身).
_NOT_IN_NAMES = re.compile(r"<[A-Za-z/!?]|[={}|\\^`]")
#: Questions about the step itself, typed where a name goes (这个怎么填, 什么是信用代码).
_QUESTION_PHRASES = re.compile(r"怎么(填|写|弄)|什么是|是什么|填什么|多少钱|要钱")
#: Words of the form itself: with a question's words (为什么要填名称, 请问需要营业执照)
#: or a speaker's (我们还没有营业执照) they are about the form, not a name. A
#: question word alone is no proof: 如何文化, 请问茶馆, 有没有书店 are companies.
_ABOUT_THE_FORM = re.compile(r"填|营业执照|执照|注册|信用代码|手机|邮箱|联系人|法人|名称|姓名|名字")
_ASKING = re.compile(r"^(为什么|为啥|怎么|如何|请问|能不能|可不可以|可以|是不是|有没有|是否|要不要|需不需要|需要|必须|一定要)|谁|什么|哪")
_SPEAKING = re.compile(r"(我|我们|你|您|还没)|(没有|不填|不用填)(联系人|营业执照|执照|名称|名字|姓名|邮箱|手机)$")
#: A business's name by its ending, saying nothing of wanting or not having
#: (我要注册公司, 还没有营业执照的店 are sentences): one such is a name whatever words it holds.
_BUSINESS_NAME = re.compile(r"^[^没不要想还]*(有限公司|工作室|商行|店|厂|中心|合作社|事务所|经营部|门市部|馆|坊)$")
#: Sentences typed where a name goes: the user speaking of themselves or of the
#: form (我要改邮箱, 我不知道). Not 我的/我爱/我是 (我的钢铁网, 我爱我家, 我是大厨 are companies).
_SENTENCE_START = re.compile(r"(我|你|您)(要改|想改|要修改|想修改|不想|不知道|不会|不要|不填|也不)|我们?(先|要|想)问|不知道$|以后再|先不|等一下|稍等")
#: …and where a person's name goes: 我是张三, 我叫张三.
_INTRODUCING = re.compile(r"我(是|叫)")
#: Words that are nobody's name: replies to the bot and the form's own labels.
_NOT_NAMES = frozenset((
    "好", "好的", "好滴", "行", "可以", "谢谢", "谢谢你", "多谢", "嗯", "嗯嗯", "ok", "okay", "test", "测试", "不知道",
    "好吧", "行吧", "知道了", "你好", "您好", "你猜", "不清楚", "我也不清楚", "我没有",
    "我自己", "自己", "就是我", "我本人", "本人", "同上", "同前", "老板", "老板娘", "店主", "负责人", "null", "none", "n/a", "空",
    "公司名称", "企业名称", "名称", "姓名", "名字", "真实姓名", "联系人", "联系人姓名", "营业执照上的名字",
    "人工客服", "客服", "人工", "转人工", "在吗", "在不在",
    # The form's other labels, typed to pick a field (修改 → 邮箱) or copied from the prompt.
    "手机", "手机号", "手机号码", "电话", "电话号码", "联系电话", "邮箱", "电子邮箱", "邮箱地址", "邮件", "e-mail", "email",
    "微信", "微信号", "qq", "统一社会信用代码", "社会信用代码", "信用代码", "营业执照", "营业执照上的名称",
    "身份证上的名字", "身份证上的姓名", "主体类型", "成年", "已成年", "未成年",
    # Yes and no, and "not yet": answers to another step.
    "是", "是的", "对", "对的", "没错", "否", "不是", "暂时没有", "还没有", "还没想好", "没想好", "不知道叫啥",
    "没有公司名", "跟营业执照一样", "和营业执照一样", "同营业执照", "哈哈", "哈哈哈",
))
#: What a company's name ends with, sent alone ("公司" and "企业" are the entity type's words).
_BARE_COMPANY_WORDS = frozenset(("有限公司", "有限责任公司", "股份有限公司", "集团", "集团有限公司", "个体户",
                                 "个体工商户", "工作室", "商行"))


#: What users send the account that is no one's name and no command word of the
#: router (those are refused before a step sees them): a dialog's own answers
#: and the labels of the menu (data/menu.json), typed instead of tapped.
_BOT_WORDS = frozenset((
    "确认注销", "确认", "修改", "上一步", "重新填写",
    "服务协议", "查看条款", "同意协议", "不同意", "撤回同意", "微拓官网", "商家服务", "商家注册", "我的账户", "帮助",
))


#: Answers that mean "none" or "skip": no one's name.
_NONE_WORDS = frozenset(("跳过", "无", "没有", "不填", "暂无", "不用", "略过", "不知道"))

#: Endings of a question in Chinese ("…做广告吗"), besides the question mark.
_QUESTION_ENDS = ("吗", "呢", "嘛")
#: Words that end a question without 吗 (统一社会信用代码是什么, 没有营业执照怎么办, 在哪里看):
#: at a step they are no answer, nor a code of 11 characters.
_ASKING_ENDS = ("是什么", "什么意思", "是啥", "啥意思", "怎么办", "咋办", "怎么填", "咋填", "怎么写", "在哪", "在哪里",
                "在哪儿", "哪里看", "哪看", "哪里找", "多少钱", "怎么收费", "怎么查", "哪里查", "怎样", "咋样", "归谁",
                "是谁")
#: Beginnings of one ("为什么要手机号"); not 什么 alone (什么值得买 is a company).
_QUESTION_STARTS = ("为什么", "为啥", "怎么", "怎样", "如何", "请问", "能不能", "可不可以", "是不是", "有没有",
                    "是否", "要不要", "需不需要", "必须要", "一定要")


def is_question(text: str) -> bool:
    """Whether ``text`` asks something (a question mark, 吗/呢/嘛 at the end,
    为什么/怎么/请问 … at the start): at a dialog's step, it is no answer."""
    value = simplified(fold(text))
    bare = value.rstrip(TRAILING_PUNCTUATION)
    return "?" in value or bare.endswith(_QUESTION_ENDS + _ASKING_ENDS) or value.startswith(_QUESTION_STARTS)


def parse_entity_name(text: str, entity_type: str) -> str:
    if entity_type == "enterprise":
        return _name(text, "entity_name", "企业名称", 4, 100, texts.EXAMPLE_COMPANY_NAME)
    return _person(text, "entity_name", "姓名", "张三")


def parse_contact_name(text: str, registrant: str | None = None) -> str:
    """The contact's name. ``registrant``: the name of the individual registering,
    which 同上, 就是我, 本人 stand for at this step (an enterprise's contact has
    to be named)."""
    words = _bare_words(text)
    if words in _SAME_PERSON:
        if registrant:
            return registrant
        raise Invalid("请直接输入联系人的姓名，例如：李四（联系人是负责与微拓联系的人，可以是您本人）。", "contact_name")
    if _LEGAL_REPRESENTATIVE.search(words) and not (is_question(text) or _ASKING.search(words)):
        raise Invalid("这里不需要填写法定代表人：请只输入联系人（负责与微拓联系的人）的姓名，例如：李四", "contact_name")
    return _person(text, "contact_name", "联系人姓名", "李四")


def _bare_words(text: str) -> str:
    """``text`` as words to compare: Simplified, folded, without the punctuation
    a keyboard adds and the filler around an answer (就是我吧 → 是我)."""
    words = simplified(fold(text)).strip().rstrip(TRAILING_PUNCTUATION).lower()
    return re.sub(r"^(就|还|也|都)(是)?|(吧|啊|呀|的|了|哈)+$", "", words) or words


#: What people answer at the contact step when it is themselves (or the person named before).
_SAME_PERSON = frozenset((
    "同上", "同前", "我", "是我", "我自己", "自己", "本人", "我本人", "就是我", "就我", "一样", "同一个人", "同一人",
    "和上面一样", "跟上面一样", "与上面一样", "同上面", "上面那个", "和前面一样", "跟前面一样", "和姓名一样", "同姓名",
    "和名字一样", "跟名字一样",
))
_LEGAL_REPRESENTATIVE = re.compile(r"法人|法定代表")
#: "My name is …" said in full (我叫张三, 联系人是李娜): the name is what follows. Not
#: 我是 (我是负责人, 我是老板的助理), refused below with a request for the name alone.
_SAID_NAME = re.compile(r"^(?:我叫|我的名字(?:是|叫)|名字(?:是|叫)|姓名(?:是|为)|联系人(?:姓名)?(?:是|叫|为))\s*(\S.*)$")
#: What no person's name holds: a sentence's punctuation, and the words of one
#: (李娜负责, 我是负责对接的, 还是我来吧).
_NOT_IN_PERSONS = re.compile(r"[，,、;；:：!！…]|我|你|您|一样|上面|前面|自己|负责|对接|代表|联系")


def _person(text: str, field: str, label: str, example: str) -> str:
    said = _SAID_NAME.match(simplified(fold(text)).strip())
    if said:
        text = said.group(1)
    value = _name(text, field, label, 2, 30, example)
    if is_question(value):  # 不同意会怎样, 怎么注销: no one's name (a company may be 如何文化; a person is not)
        raise Invalid(f"这看起来是一个问题，不是{label}。请输入{label}，例如：{example}", field)
    plain = simplified(value.rstrip(TRAILING_PUNCTUATION).lower())  # 企業 and 跳過 are 企业 and 跳过
    if plain in _ENTITY_WORDS:  # the previous step's answer, sent again after 上一步
        raise Invalid(f"“{value}”是主体类型，不是{label}。请输入{label}，例如：{example}", field)
    if plain in _NONE_WORDS:  # 跳过 skips the e-mail step, not this one
        raise Invalid(f"{label}必须填写，不能跳过。请输入{label}，例如：{example}", field)
    if _INTRODUCING.match(plain):
        raise Invalid(f"请只输入{label}本身（不要加“我是”“我叫”），例如：{example}", field)
    if _EMAIL.search(value):  # the next step's answer, typed a step early
        raise Invalid(f"这看起来是邮箱地址，不是{label}。请输入{label}，例如：{example}", field)
    if any(c.isdigit() for c in value):  # a company's name may hold digits (58同城), a person's does not
        raise Invalid(f"{label}不能包含数字，请按证件上的写法输入。例如：{example}", field)
    if _NOT_IN_PERSONS.search(simplified(value)):
        raise Invalid(f"“{value}”看起来是一句话，不是{label}。请只输入{label}本身，例如：{example}", field)
    if _ORGANISATION_NAME.search(simplified(value)):  # a company's name where a person's goes
        hint = "（以企业注册请选择主体类型“企业”）" if field == "entity_name" else ""
        raise Invalid(f"“{value}”看起来是企业或商户的名称，不是{label}。请输入{label}，例如：{example}{hint}", field)
    return value


#: How an organisation's name ends, and no person's does.
_ORGANISATION_NAME = re.compile(r"(公司|集团|工作室|商行|事务所|合作社|经营部|门市部)$")


# -- unified social credit code (GB 32100-2015) -------------------------------------

_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
CREDIT_CODE_EXAMPLE = "91450100MA5KXXXXXX"
#: The first character: the registering authority (1 机构编制 … 9 市场监管, A 军队, N 农业, Y 其他).
_AUTHORITIES = "123456789ANY"


def credit_code_check_char(first17: str) -> str:
    """The 18th character GB 32100-2015 prescribes for the first 17."""
    total = sum(_CODE_CHARS.index(c) * w for c, w in zip(first17, _CODE_WEIGHTS))
    return _CODE_CHARS[(31 - total % 31) % 31]


def _typed_value(text: str) -> str:
    """A code, number or address as typed on a phone: folded, without the full
    stop or exclamation mark a keyboard adds after it ("13812345678。") and
    without the form's label before it ("手机：13812345678")."""
    return without_label(fold(text).rstrip(STATEMENT_END))


#: The form's labels, as people copy them from a template or a message ("姓名：张三").
_FIELD_LABEL = re.compile(
    r"^\s*(?:真实姓名|姓名|名字|企业名称|公司名称|单位名称|主体名称|商户名称|名称|联系人姓名|联系人|联络人|"
    r"手机号码|手机号|手机|联系电话|电话号码|电话|电子邮箱|邮箱地址|邮箱|e-?mail|"
    r"统一社会信用代码|社会信用代码|信用代码)\s*:\s*",
    re.IGNORECASE,
)


def without_label(value: str) -> str:
    """``value`` without a leading form label and its colon (folded text:
    the full-width colon is ``:`` by then). A label with nothing after it is
    the label alone ("姓名：" is 姓名, which no step takes for a value)."""
    # Matched on the Simplified text (聯繫人：, 手機：), cut from what was typed:
    # the mapping is a character for a character.
    label = _FIELD_LABEL.match(simplified(value))
    rest = value[label.end():] if label else value
    return rest if rest.strip() else value.rstrip(": ")


#: "I have no business licence", in the words people use.
NO_LICENCE = re.compile(r"(没有|没|无|未办|还没办|不用办)(营业)?执照|执照.{0,3}(没有|没办|还没)")


def parse_credit_code(text: str) -> str:
    value = re.sub(r"[\s-]", "", _typed_value(text)).upper()
    example = f"例如：{texts.EXAMPLE_CREDIT_CODE}（营业执照上的统一社会信用代码）"
    if not value:
        raise Invalid(f"请填写统一社会信用代码。{example}", "credit_code")
    if re.search(r"[\u4e00-\u9fff]", value):  # 我没有营业执照, 在哪里看: words, not a code of 7 characters
        raise Invalid(texts.FORM_NO_LICENCE if NO_LICENCE.search(value) else texts.FORM_CREDIT_CODE, "credit_code")
    if len(value) != 18:
        raise Invalid(f"统一社会信用代码应为 18 位，您输入了 {len(value)} 位。{example}", "credit_code")
    bad = sorted({c for c in value if c not in _CODE_CHARS})
    if bad:
        raise Invalid(
            f"统一社会信用代码只含数字和大写字母（不含 I、O、Z、S、V），“{''.join(bad)}”不在其中。{example}", "credit_code"
        )
    if value[0] not in _AUTHORITIES or not value[2:8].isdigit():
        raise Invalid(f"这不是有效的统一社会信用代码：第 1 位是登记管理部门代码，第 3 到 8 位是行政区划代码（数字），"
                      f"请核对营业执照后重新输入。{example}", "credit_code")
    if credit_code_check_char(value[:17]) != value[17]:
        raise Invalid(f"统一社会信用代码的校验位不正确，请核对营业执照后重新输入。{example}", "credit_code")
    if value == texts.EXAMPLE_CREDIT_CODE:
        raise Invalid("这是提示中的示例代码，不是您的。请输入您营业执照上的统一社会信用代码。", "credit_code")
    return value



# -- contact methods -------------------------------------------------------------------

_PHONE = re.compile(r"1[3-9][0-9]{9}")  # ASCII digits only: "\d" takes ٣ and ३ too


def parse_phone(text: str) -> str:
    value = re.sub(r"[\s()-]", "", _typed_value(text))
    if value.startswith("+86"):
        value = value[3:]
    elif value.startswith("0086") and len(value) == 15:  # the international prefix dialled as digits
        value = value[4:]
    elif value.startswith("86") and len(value) == 13:
        value = value[2:]
    if not _PHONE.fullmatch(value):
        raise Invalid(f"{_phone_problem(value)}请输入 11 位中国大陆手机号码，以 13 到 19 开头，例如：13812345678", "phone")
    return value


def _phone_problem(value: str) -> str:
    """What is wrong with a phone number, said first so the user sees it at once."""
    if not value:
        return "请填写手机号码。"
    if not (value.isascii() and value.isdigit()):
        return "手机号码只能包含数字。"
    if value.startswith("0") and len(value) >= 10:
        # An area code (0771 …): a landline, told as such rather than "不能以 07 开头".
        return "这像是固定电话号码，联系方式需要填写手机号码。"
    if len(value) != 11:
        return f"手机号码应为 11 位，您输入了 {len(value)} 位。"
    return f"手机号码不能以 {value[:2]} 开头。"


# A local part of dot-separated atoms (no leading, trailing or double dot); a
# domain of labels that neither start nor end with a hyphen.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_EMAIL = re.compile(rf"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@(?:{_LABEL}\.)+[A-Za-z]{{2,}}")


_PHONE_IN_TEXT = re.compile(r"(?<![0-9])(1[3-9][0-9])((?:[ -]?[0-9]){6})((?:[ -]?[0-9]){2})(?![0-9])")
_CODE_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])([0-9A-Za-z]{2})[0-9A-Za-z]{16}(?![0-9A-Za-z])")


def hide_contacts(text: str) -> str:
    """``text`` with the phone numbers, e-mail addresses and credit codes in it
    masked (138******56, w***@qq.com, 91****************): what users type is
    kept in the question log that every admin reads, and a form's answers typed
    outside the form (before consenting) landed there in full."""
    text = _PHONE_IN_TEXT.sub(lambda m: m.group(1) + "******" + m.group(3)[-2:], text)
    text = _EMAIL.sub(lambda m: m.group()[0] + "***@" + m.group().split("@", 1)[1], text)
    return _CODE_IN_TEXT.sub(
        lambda m: m.group(1) + "*" * 16 if sum(c.isdigit() for c in m.group()) >= 8 else m.group(), text)


def parse_email(text: str) -> str:
    # A Chinese keyboard's full stop for the dot (zhang@qq。com): NFKC leaves 。 as it is.
    value = _typed_value(text).replace("。", ".")
    if len(value) > 254:
        raise Invalid(f"邮箱地址过长（最多 254 个字符，您输入了 {len(value)} 个）。", "email")
    if not _EMAIL.fullmatch(value):
        raise Invalid("邮箱格式不正确，例如：name@example.com。", "email")
    return value.lower()


def parse_yes_no(text: str, field: str) -> bool:
    value = answer_word(text)
    if value in ("是", "是的", "是滴", "是啊", "是呀", "对", "对的", "对啊", "嗯", "嗯嗯", "确认", "yes", "y"):
        return True
    if value in ("否", "不是", "不是的", "不", "没有", "no", "n"):
        return False
    raise Invalid("请回复“是”或“否”。", field)


#: Answers to "are you 18 or over?" in words of their own (已满18, 成年了; 未满十八岁).
_ADULT = re.compile(r"(我|是的?|对|嗯|确认)?[,，]?(我|确认)?(已经?|早就?)?(年满|满|过|超过)了?(18|十八)(岁|周岁)?了?"
                    r"|(已经?)?(满|过)了|(我)?(已经?)?成年了?|我?(18|十八)(岁|周岁)?以上")
_MINOR = re.compile(r"(我)?(还)?(未|没|没有|不)年?满(18|十八)?(岁|周岁)?|(还)?未成年|(还)?没成年|(18|十八)(岁|周岁)?以下|不到(18|十八)(岁|周岁)?")


def parse_adult(text: str) -> bool:
    """The age step's answer: 是 / 否, or said in words (已满18, 未成年)."""
    value = answer_word(text).replace(" ", "")
    if _MINOR.fullmatch(value):
        return False
    if _ADULT.fullmatch(value):
        return True
    return parse_yes_no(text, "adult")
