"""Every sentence the bot says to users, in one place (Simplified Chinese)."""

HELP = (
    "您可以发送以下指令：\n"
    "· 帮助：查看本菜单\n"
    "· 条款：阅读《微拓软件服务使用协议》\n"
    "· 注册：注册成为微拓商家\n"
    "· 我的账户：查看账户与状态\n"
    "· 通知设置：管理通知订阅\n"
    "也可以直接提问，例如“我上传的图片版权归谁？”"
)

WELCOME = "欢迎关注微拓（WETOOP）！我们为商家提供社交电商工具。\n\n" + HELP

NOT_UNDERSTOOD = "抱歉，暂时没能理解您的意思。\n\n" + HELP

ONLY_TEXT = "目前只能处理文字消息，请用文字描述您的问题。\n\n" + HELP

INTERNAL_ERROR = "抱歉，系统开了个小差，请稍后再试。"

STORAGE_DOWN = "抱歉，系统暂时无法保存您的操作，请稍后再试。您刚才的操作未被记录。"

DIALOG_UNAVAILABLE = "对话功能暂时不可用，请稍后再试。您仍然可以直接提问。"

CONTINUED = "（未完，见下一条消息）"
