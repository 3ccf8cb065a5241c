"""Offline language identification for `--from auto`: stop-word and letter profiles.

Pure functions, any thread. Why not ask the model: a 270M base model guesses the language
of a short line less reliably than its most frequent words do, and this costs microseconds
instead of a model call. The profiles below are hand-written: the most frequent function
words of each language (articles, pronouns, prepositions, auxiliaries) and its letters
that the others lack. Languages the translator does not support are still recognised, so
that the user hears "Italian is not supported" rather than a wrong guess.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Languages the translator serves (code -> English name).
SUPPORTED = {"en": "English", "fr": "French", "de": "German", "es": "Spanish"}
# Recognised only to refuse them clearly.
OTHER_NAMES = {"it": "Italian", "pt": "Portuguese", "nl": "Dutch", "ru": "Russian", "uk": "Ukrainian",
               "el": "Greek", "ar": "Arabic", "he": "Hebrew", "zh": "Chinese", "ja": "Japanese", "ko": "Korean",
               "hi": "Hindi", "th": "Thai"}
NAMES = {**SUPPORTED, **OTHER_NAMES}

_STOPWORDS = {
    "en": "the a an and of to in is are was were be been it that this these those i you he she we they my your "
          "his her our their not no with for on at by from as but or if do does did have has had will would can "
          "could should what which who when where why how there here all any some very just about into than then "
          "me him us them it's don't i'm isn't can't won't",
    "fr": "le la les un une des du de et est sont était être à au aux en dans pour par sur avec sans ne pas plus "
          "que qui quoi où je tu il elle nous vous ils elles mon ma mes ton ta tes son sa ses notre votre leur "
          "ce cette ces c'est j'ai il y a ai as avons avez ont suis es sommes êtes fait très bien mais ou donc "
          "aussi comme tout tous même lui leur y moi toi qu'il n'est me te ceci cela ça oui non merci bonjour "
          "faut suis vais va allons peux veux sais ici jamais toujours rien quelque chose maintenant aujourd'hui",
    "de": "der die das den dem des ein eine einen einem einer und ist sind war waren sein zu im in am an auf "
          "mit für von bei aus nach nicht kein keine ich du er sie es wir ihr mein dein sein unser euer "
          "dass wie was wer wo wann warum auch noch schon sehr aber oder wenn hat haben hatte habe bin bist "
          "wird werden kann können muss will gibt nur so man sich uns ihm ihn dieser diese dieses mir dir euch "
          "ihnen einige hast hat tut leid glaube glaubst kaum immer nie nichts etwas jetzt heute hier gern bitte "
          "danke ja nein doch mal",
    "es": "el la los las un una unos unas y es son era eran ser estar está están de del al en con sin por para "
          "que qué quien quién donde dónde cuando cuándo como cómo no sí yo tú él ella nosotros vosotros ellos "
          "ellas mi mis tu tus su sus nuestro muy pero o también ya hay he ha han tengo tiene lo le les me te se "
          "nos este esta estos estas eso esto más menos todo todos porque poco cada nada algo bien aquí ahora "
          "siempre nunca hoy mañana hace puedo quiero voy vas va vamos estoy estás soy eres somos tengo gracias "
          "hola usted ustedes",
    "it": "il lo gli la le un uno una e è sono era di del della dei degli delle al alla in con su per tra fra "
          "non che chi io tu lui lei noi voi loro mio mia tuo tua suo sua ho hai ha abbiamo avete hanno molto "
          "ma anche come questo questa quello quella sempre perché so dove sia mi ti ci si puoi posso stai sto "
          "cosa qui oggi grazie ciao buongiorno della nella sul",
    "pt": "o a os as um uma uns umas e é são era de do da dos das no na nos nas em com sem por para que não "
          "sim eu tu ele ela nós vós eles elas meu minha teu tua seu sua muito mas também já há tem têm você "
          "isso isto este esta mais como",
    "nl": "de het een en is zijn was waren van in op met voor door aan bij uit niet geen ik jij je hij zij ze "
          "wij we jullie mijn jouw zijn haar ons onze dat dit die wat wie waar wanneer hoe ook nog al zeer "
          "maar of als heeft hebben had kan kunnen moet wil er naar",
}
STOPWORDS = {lang: frozenset(words.split()) for lang, words in _STOPWORDS.items()}

# Letters one language uses and the other Latin-script candidates (almost) never do.
_LETTERS = {
    "de": "äöüß",
    "fr": "çàèêëîïôûùœ",
    "es": "ñ¿¡áíóú",
    "pt": "ãõâ",
    "it": "ìò",
}

# Letter sequences typical of a language's words; weak evidence that breaks ties between
# languages sharing short function words ("de", "es", "un", "me").
_NGRAMS = {
    "en": ("th", "wh", "ing", "ght", "ly", "ou", "ee", "oo", "w"),
    "fr": ("eau", "eux", "oi", "ou", "ait", "ez", "qu'", "tion", "ille", "ç"),
    "de": ("sch", "ch", "ung", "ei", "ie", "tz", "cht", "k", "w", "z"),
    "es": ("ll", "ción", "os", "as", "ar", "ue", "ie", "ñ", "qu"),
    "it": ("zione", "gli", "cch", "zz", "tt"),
}

_SCRIPTS = [  # (first code point, last code point, language) for non-Latin scripts
    (0x0400, 0x04FF, "ru"), (0x0370, 0x03FF, "el"), (0x0590, 0x05FF, "he"), (0x0600, 0x06FF, "ar"),
    (0x0900, 0x097F, "hi"), (0x0E00, 0x0E7F, "th"), (0x3040, 0x30FF, "ja"), (0xAC00, 0xD7AF, "ko"),
    (0x4E00, 0x9FFF, "zh"),
]

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


@dataclass(frozen=True)
class Detection:
    language: str | None  # ISO 639-1 code, or None when there is too little to tell
    confidence: float  # 0..1: share of the evidence that points to this language
    supported: bool

    @property
    def name(self) -> str:
        return NAMES.get(self.language or "", "an unknown language")


def _script_language(text: str) -> str | None:
    counts: dict[str, int] = {}
    letters = 0
    for ch in text:
        if not ch.isalpha():
            continue
        letters += 1
        code = ord(ch)
        for lo, hi, lang in _SCRIPTS:
            if lo <= code <= hi:
                counts[lang] = counts.get(lang, 0) + 1
                break
    if not letters or not counts:
        return None
    lang, n = max(counts.items(), key=lambda kv: kv[1])
    if n < letters * 0.3:
        return None
    if lang == "zh" and counts.get("ja"):
        return "ja"  # Japanese mixes kana with kanji; Chinese has no kana
    if lang == "ru" and any(ch in text for ch in "їєіґ"):
        return "uk"
    return lang


def detect(text: str) -> Detection:
    """The most likely language of ``text``; ``language`` is None when nothing tells."""
    script = _script_language(text)
    if script:
        return Detection(script, 1.0, script in SUPPORTED)
    lowered = unicodedata.normalize("NFC", text.lower().replace("’", "'"))
    words = _WORD.findall(lowered)
    scores = {lang: 0.0 for lang in STOPWORDS}
    for word in words:
        for lang, stop in STOPWORDS.items():
            if word in stop:
                # A word shared by several languages ("de", "en", "a") counts less for each.
                scores[lang] += 1.0
    for word in words:
        for lang, grams in _NGRAMS.items():
            scores[lang] += 0.15 * sum(1 for g in grams if g in word)
    for lang, letters in _LETTERS.items():
        hits = sum(lowered.count(ch) for ch in letters)
        scores[lang] += 1.5 * hits
    # English text has neither accents nor the others' function words; a few plain words
    # with no stop-word hit at all are most likely English names or jargon, but say so softly.
    total = sum(scores.values())
    if total <= 0:
        if words and all(ch.isascii() for ch in lowered):
            return Detection("en", 0.3, True)
        return Detection(None, 0.0, False)
    lang, best = max(scores.items(), key=lambda kv: kv[1])
    return Detection(lang, best / total, lang in SUPPORTED)


def language_name(code: str) -> str:
    return NAMES.get(code, code)


def normalise_code(value: str) -> str:
    """Accept codes and names: 'fr', 'fra', 'French', 'français' -> 'fr'; 'auto' stays."""
    key = value.strip().lower()
    if key in ("auto", ""):
        return "auto"
    aliases = {
        "en": "en", "eng": "en", "english": "en", "anglais": "en", "englisch": "en", "inglés": "en", "ingles": "en",
        "fr": "fr", "fra": "fr", "fre": "fr", "french": "fr", "français": "fr", "francais": "fr", "französisch": "fr",
        "de": "de", "deu": "de", "ger": "de", "german": "de", "deutsch": "de", "allemand": "de", "alemán": "de",
        "es": "es", "spa": "es", "spanish": "es", "español": "es", "espanol": "es", "espagnol": "es", "spanisch": "es",
    }
    if key in aliases:
        return aliases[key]
    for code, name in NAMES.items():
        if key in (code, name.lower()):
            return code
    return key
