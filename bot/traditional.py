"""Traditional Chinese characters folded to their Simplified forms.

Users in Hong Kong, Macau and Taiwan, or with a Traditional input method, ask
"我上傳的圖片版權歸誰" and type 條款 or 幫助; the agreement, the Q&A's lexicon and
the commands are Simplified. Character by character, for the characters such
questions use (the agreement's own, everyday words, commerce and law), in the
Taiwan and the Hong Kong forms (説, 閲, 羣 …): no
word-level conversion (软体 stays 软体; the lexicon's synonyms cover such words).
None of the keys occurs in the agreement or the Q&A's data
(``tests/test_traditional.py``), so Simplified text folds to itself; 著 is left
out (著作权 is Simplified too), and so are the financial numerals (壹, 贰).
The table is our own, written for this product.
"""

from __future__ import annotations

#: Pairs of a Traditional character and its Simplified form.
_PAIRS = (
    '丟丢 並并 乾干 亂乱 佈布 佔占 併并 來来 係系 個个 們们 偵侦 偽伪 備备 傭佣 傳传 債债 僅仅 僞伪 僱雇 價价 億亿 償偿 優优 儲储 兌兑 兒儿 內内 兩两 冊册 凍冻 別别 '
    '刪删 則则 剛刚 創创 劃划 勁劲 動动 務务 勞劳 勢势 勵励 匯汇 區区 協协 卻却 參参 叄叁 員员 唄呗 問问 啓启 啞哑 啟启 喫吃 單单 喲哟 嗆呛 嗎吗 嗚呜 嘍喽 嘗尝 嚇吓 '
    '嚮向 囉啰 囑嘱 國国 圍围 圓圆 圖图 團团 執执 報报 塊块 壓压 壞坏 夠够 夥伙 奪夺 妳你 學学 宮宫 實实 寧宁 審审 寫写 寶宝 將将 專专 尋寻 對对 導导 屢屡 屬属 師师 '
    '帳帐 帶带 幣币 幫帮 幹干 幾几 庫库 廠厂 廢废 廣广 廳厅 張张 強强 彈弹 彙汇 後后 從从 復复 徵征 徹彻 惡恶 態态 慣惯 憑凭 憲宪 應应 懲惩 懶懒 懷怀 戶户 掃扫 掙挣 '
    '掛挂 採采 換换 揮挥 損损 搖摇 搗捣 搶抢 撐撑 撥拨 撫抚 擁拥 擇择 擊击 擋挡 擔担 據据 擠挤 擬拟 擱搁 擴扩 擺摆 擾扰 攔拦 攜携 攝摄 攤摊 攬揽 敗败 敵敌 數数 斂敛 '
    '斷断 於于 時时 暫暂 曆历 書书 會会 東东 條条 棄弃 業业 構构 槍枪 樂乐 標标 樣样 機机 檔档 檢检 檯台 櫃柜 櫥橱 權权 歐欧 歡欢 歲岁 歷历 歸归 殺杀 毀毁 氣气 氫氢 '
    '決决 沒没 沖冲 況况 洩泄 淺浅 減减 測测 準准 滿满 漁渔 漢汉 漲涨 漸渐 潔洁 濕湿 濟济 濫滥 濾滤 瀏浏 灘滩 灣湾 災灾 為为 無无 煙烟 煩烦 熱热 燈灯 燒烧 營营 爭争 '
    '爲为 牽牵 獄狱 獎奖 獨独 獲获 獻献 現现 瑣琐 環环 產产 畫画 異异 當当 疊叠 療疗 發发 盜盗 盞盏 盡尽 監监 盤盘 眾众 睜睁 瞭了 矯矫 確确 碼码 礎础 礙碍 祇只 禍祸 '
    '禮礼 禱祷 稅税 種种 稱称 積积 穩稳 穫获 窮穷 窺窥 竄窜 竊窃 筆笔 節节 範范 築筑 簡简 簽签 籌筹 籠笼 糧粮 糰团 糾纠 紀纪 約约 紅红 納纳 紐纽 紙纸 級级 紛纷 紡纺 '
    '紮扎 細细 紹绍 終终 組组 結结 絕绝 絡络 給给 絨绒 統统 絲丝 綁绑 經经 綜综 綠绿 維维 網网 緊紧 線线 締缔 緣缘 編编 緩缓 練练 緻致 縣县 縫缝 縮缩 總总 織织 繞绕 '
    '繩绳 繫系 繳缴 繼继 續续 纔才 罰罚 罷罢 羅罗 羨羡 義义 習习 聖圣 聞闻 聯联 聲声 職职 聽听 肅肃 脅胁 腦脑 腳脚 膚肤 膽胆 臉脸 臺台 與与 舉举 舊旧 舖铺 艙舱 艱艰 '
    '萬万 蒐搜 蓋盖 薦荐 藍蓝 藝艺 蘇苏 蘋苹 處处 虛虚 號号 虧亏 蝦虾 螄蛳 蟲虫 衆众 術术 衝冲 裏里 補补 裝装 裡里 製制 複复 襯衬 襲袭 見见 規规 視视 親亲 覺觉 覽览 '
    '觀观 觸触 訂订 計计 訊讯 討讨 訓训 託托 記记 訟讼 訪访 設设 許许 訴诉 診诊 註注 詐诈 評评 詞词 詢询 試试 詩诗 話话 該该 詳详 誇夸 誌志 認认 誒诶 誕诞 語语 誠诚 '
    '誤误 說说 誰谁 誼谊 調调 談谈 請请 論论 諾诺 謀谋 謂谓 謙谦 講讲 謝谢 謠谣 謹谨 證证 識识 譯译 議议 護护 譽誉 讀读 變变 讓让 讚赞 豐丰 豬猪 貓猫 貝贝 負负 財财 '
    '貢贡 貧贫 貨货 販贩 貪贪 貫贯 責责 貯贮 貴贵 貶贬 買买 貸贷 費费 貼贴 貿贸 賀贺 賃赁 資资 賊贼 賓宾 賞赏 賠赔 賣卖 賦赋 質质 賬账 賭赌 賴赖 購购 賽赛 贈赠 贊赞 '
    '贏赢 趕赶 趨趋 跡迹 踐践 蹤踪 車车 軌轨 軍军 軒轩 軟软 較较 載载 輔辅 輕轻 輛辆 輝辉 輩辈 輪轮 輯辑 輸输 轄辖 轉转 辦办 辭辞 農农 這这 連连 週周 進进 遊游 運运 '
    '過过 達达 違违 遞递 遠远 適适 遲迟 遷迁 選选 遺遗 還还 邊边 郵邮 鄉乡 醜丑 醫医 釋释 針针 釣钓 鈔钞 鈕钮 鉛铅 銀银 銳锐 銷销 鋪铺 鋼钢 錄录 錢钱 錦锦 錯错 錶表 '
    '鍋锅 鍵键 鍾钟 鎖锁 鎮镇 鏈链 鏡镜 鐘钟 鐵铁 鑑鉴 鑒鉴 鑰钥 長长 門门 閃闪 閉闭 開开 閒闲 間间 閣阁 閥阀 閱阅 闆板 闊阔 關关 陣阵 陰阴 陳陈 陸陆 陽阳 隊队 階阶 '
    '際际 隨随 險险 隱隐 隻只 雖虽 雙双 雜杂 雞鸡 離离 難难 雲云 電电 靈灵 靜静 韓韩 響响 頁页 頂顶 項项 順顺 須须 預预 頑顽 頓顿 領领 頭头 頻频 題题 額额 顏颜 願愿 '
    '類类 顧顾 顯显 風风 颱台 飛飞 飯饭 飲饮 餅饼 養养 餘余 館馆 饋馈 饒饶 馬马 駐驻 駕驾 駛驶 騎骑 騙骗 騰腾 騷骚 驅驱 驗验 驚惊 驢驴 髒脏 體体 髮发 鬍胡 鬚须 鬥斗 '
    '鬧闹 魚鱼 鮮鲜 鳥鸟 鳴鸣 鴨鸭 鹽盐 麗丽 麥麦 麵面 麼么 麽么 黃黄 點点 黨党 齊齐 齒齿 齡龄 龍龙 龜龟 '
    '狀状 説说 閲阅 羣群 綫线 衞卫 屆届 層层 場场 籤签 覈核'
)

TO_SIMPLIFIED = str.maketrans({pair[0]: pair[1] for pair in _PAIRS.split()})


def simplified(text: str) -> str:
    """``text`` with Traditional characters replaced by their Simplified forms."""
    return text.translate(TO_SIMPLIFIED)
