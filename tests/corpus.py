"""Real sentences in many languages and code, for int8's fidelity to fp32 on trained weights.

all-MiniLM-L6-v2 was trained on English, so its other-language texts are mostly word pieces
and [UNK]: both kinds are kept, as a service meets both. Used by ``tests/model/test_quantize.py``
and ``benchmarks/int8.py`` (benchmarks import tests' data, never the other way).
"""

from __future__ import annotations

ENGLISH = [
    "The meeting moved to Thursday afternoon.", "How do I reset my password without email?",
    "Photosynthesis turns light into sugar.", "The central bank raised rates by 0.25 points.",
    "She ran the marathon in under four hours.", "Cheap flights from London to Lisbon",
    "The patient reported headaches and dizziness.", "Quarterly revenue grew 12% year over year.",
    "The library extended its opening hours during exam season, and students filled every "
    "desk until midnight.",
    "Our return policy allows refunds within thirty days if the item is unused and in its "
    "original packaging; shipping costs are not refunded.",
    "Volcanic eruptions can cool the planet for a year or two because sulphate aerosols "
    "reflect sunlight back into space.",
    "what is the difference between a virus and a bacterium",
]
GERMAN = [
    "Der Zug nach München hat Verspätung.", "Wie lange muss man Kartoffeln kochen?",
    "Die Regierung plant eine Steuerreform.", "Nach dem Update startet mein Laptop nicht.",
    "Im Sommer wandern wir gern in den Alpen.", "Das Museum ist montags geschlossen.",
]
CHINESE = [
    "今天北京天气晴朗，最高气温二十八度。", "请问这家餐厅周末需要提前预订吗？",
    "机器学习是人工智能的一个重要分支。", "他每天早上骑自行车去公司上班。",
    "这本书讲述了一个家族三代人的故事。", "长江是中国最长的河流。",
]
FRENCH = [
    "La réunion de demain est annulée.", "Comment apprendre le piano à l'âge adulte ?",
    "Une nouvelle loi sur l'énergie est prévue.", "Nous avons passé une semaine en Bretagne.",
    "Ce fromage se marie bien avec un vin blanc sec.", "Où se trouve la gare la plus proche ?",
]
SPANISH = [
    "El restaurante abre a las ocho de la noche.", "¿Cuántos idiomas oficiales hay en España?",
    "La selección ganó en el último minuto.", "Necesito cambiar la batería de mi coche.",
    "Los alquileres subieron un diez por ciento.", "Mañana lloverá en el norte del país.",
]
JAPANESE = [
    "東京駅から新幹線で京都まで約二時間です。", "このアプリはオフラインでも使えますか？",
    "来週の会議は火曜日の午後に変更されました。", "桜の季節には多くの観光客が訪れます。",
    "彼女は毎朝コーヒーを飲みながら新聞を読む。", "注文した商品がまだ届いていません。",
]
RUSSIAN = [
    "Поезд до Санкт-Петербурга отправляется в семь утра.", "Как приготовить борщ дома?",
    "Центральный банк сохранил ключевую ставку.", "Мой телефон не заряжается после обновления.",
    "Зимой в Сибири бывает очень холодно.", "Библиотека закрыта на ремонт до конца месяца.",
]
ARABIC = [
    "يفتح المتحف أبوابه من الساعة التاسعة صباحاً.", "كيف يمكنني تغيير كلمة المرور؟",
    "ارتفعت أسعار النفط بعد قرار أوبك.", "نحن نسافر إلى القاهرة في الصيف.",
    "هذا الكتاب يتحدث عن تاريخ الأندلس.", "الطقس اليوم مشمس ودافئ.",
]
OTHERS = [  # Korean, Italian, Portuguese, Hindi, Turkish, Polish
    "서울의 지하철은 깨끗하고 편리합니다.", "이 제품의 배송 기간은 얼마나 걸리나요?",
    "Il treno per Roma parte dal binario tre.", "Come si prepara un vero risotto alla milanese?",
    "O voo para Lisboa foi cancelado por causa do nevoeiro.", "Quanto custa um café no centro?",
    "मुझे रेलवे स्टेशन का रास्ता बताइए।", "भारत में क्रिकेट बहुत लोकप्रिय खेल है।",
    "Yarın İstanbul'da yağmur bekleniyor.", "Gdzie jest najbliższa apteka?",
]
CODE = [
    "def mean(xs):\n    return sum(xs) / len(xs)", "SELECT name, COUNT(*) FROM t GROUP BY name;",
    "for (int i = 0; i < n; ++i) s += a[i];", "git rebase -i HEAD~3 && git push -f",
    "const user = await fetch(`/api/users/${id}`);", "docker run --rm -p 8080:80 nginx:alpine",
    "let v: Vec<u32> = (1..10).collect();", "ModuleNotFoundError: No module named 'numpy'",
]
SENTENCES = [*ENGLISH, *GERMAN, *CHINESE, *FRENCH, *SPANISH, *JAPANESE, *RUSSIAN, *ARABIC,
             *OTHERS, *CODE]
