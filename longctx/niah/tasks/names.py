"""Invented names and words for the synthetic tasks (English and Chinese).

Every pool is chosen so that its strings never occur in the built-in haystacks (checked by
``tests/niah/test_tasks_pools.py``): invented English names and towns, Chinese full names
(surname + two modern given-name characters) and towns (two characters + 镇) that classical
prose does not contain, modern Chinese nouns for word lists, and consonant-only variable
names, so an answer can only come from the needles.
"""

from __future__ import annotations

import random

__all__ = ["CODED_SYLLABLES", "VAR_LETTERS", "ZH_WORDS", "person", "town"]

_EN_FIRST = tuple(
    """
    Bramwen Corlith Dessaly Evrand Fennick Galvra Hestrel Ilvane Jorvik Kestra Lorwen Mirabeth
    Nolvin Pellam Quorin Rosvane Sabrith Ulvena Varrick Wenlow Xandrel Yselde Zorvan Amberly
    Brisca Calloway Dorrin Elsabet Farrin Gwendel Halvard Isolde Jessamy Kaelin Lysander Maelis
    """.split()
)
_EN_LAST = tuple(
    """
    Brackwell Coldmere Dunhallow Fenwright Glimmerton Harrowick Ironvale Kettleby Larkspurr Marrowby
    Nettlefold Oakhurst Pellingham Quillfeather Ravensworth Stonebridge Thornquist Umberlain Vantwood
    Wickersham Yarrowfield Ashcombe Birchley Copperfield Drummondale Elderby Foxhollow Greystoke
    """.split()
)
_EN_TOWNS = tuple(
    """
    Quellmar Varnholt Brindlemoor Cresthaven Dornwick Elmsbrook Farrowdale Glenhart Hollowmere
    Kestrelby Lindenshaw Mossgrave Northmarsh Orrinford Pembrook Quarrydown Rivenfold Saltmere
    Thistlecombe Umberwell Vellamoor Westerbrook Yarrowby Zellingham
    """.split()
)
_ZH_SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨"
_ZH_GIVEN_1 = "梓欣睿雨佳俊宇晨语诗"
_ZH_GIVEN_2 = "轩涵琪萱彤瑶璐婷杰磊鑫斌航辰怡"
_ZH_TOWN_1 = "青石枫柳桐芦莲栗榆桂杏梨"
_ZH_TOWN_2 = "湾岭坪塘坳渡滩埠"

# Modern nouns (none occurs in the classical Chinese haystack).
ZH_WORDS = tuple(
    """
    电脑 手机 咖啡 火车 飞机 汽车 电视 冰箱 空调 相机 钢琴 沙发 地铁 公交 快递 网络 软件 硬盘 键盘 鼠标
    耳机 巧克力 披萨 汉堡 牛排 土豆 洋葱 香蕉 菠萝 草莓 芒果 柠檬 蓝莓 足球 篮球 排球 网球 滑板 帐篷
    台灯 闹钟 手表 眼镜 背包 钱包 护照 邮票 明信片 机场 超市 银行 医院 电梯 冰淇淋 牙膏 毛巾 拖鞋 雨衣
    电池 灯泡 胶水 剪刀 橡皮 铅笔 钢笔 信封 相册 地图 指南针 望远镜 显微镜 自行车 摩托 卡车 轮船 火箭
    卫星 机器人 洗衣机 微波炉 烤箱 茶壶 咖啡杯 餐巾 吸管 纽扣 拉链 围巾 手套 袜子 牛仔裤 衬衫 外套 雨靴
    """.split()
)

# Two of these make one coded word ("zorbquix"), never an English or Chinese word.
CODED_SYLLABLES = tuple("zorb quix vlem krad plov trez gyst wumb fram skel brix drom glep snaf mirv tuln".split())

# Variable names are 5 of these (no vowels, so never an English word in capitals).
VAR_LETTERS = "BCDFGHJKLMNPQRSTVWXZ"


def person(rng: random.Random, lang: str) -> str:
    """An invented full name: ``"Corlith Fenwright"`` / ``"周梓轩"``."""
    if lang == "zh":
        return rng.choice(_ZH_SURNAMES) + rng.choice(_ZH_GIVEN_1) + rng.choice(_ZH_GIVEN_2)
    return f"{rng.choice(_EN_FIRST)} {rng.choice(_EN_LAST)}"


def town(rng: random.Random, lang: str) -> str:
    """An invented town: ``"Quellmar"`` / ``"枫湾镇"``."""
    if lang == "zh":
        return rng.choice(_ZH_TOWN_1) + rng.choice(_ZH_TOWN_2) + "镇"
    return rng.choice(_EN_TOWNS)
