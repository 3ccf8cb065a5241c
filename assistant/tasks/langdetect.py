"""Offline language identification for `--from auto`: py3langid, limited to the languages the app names.

Pure functions, any thread; the model (langid.py's, shipped inside the py3langid wheel, never
fetched) loads once, on the first call, under a lock. Why a library and not the hand-written
stop-word profiles this module held before: benchmarks/text_tools.py measured both on short
(Tatoeba) and long (news) lines, and on the development part py3langid was the more accurate
and the faster on each; why not
ask the model: a small base model guesses the language of a short line less reliably and a
model call costs far more. The classifier chooses among the supported languages and the other
languages in ``OTHER_NAMES``, so that the user hears "Italian is not supported" rather than a
wrong guess. ``STOPWORDS`` (the most frequent function words of each language) stays for the
study cards' term finder.
"""

from __future__ import annotations

import threading
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

_identifier = None
_identifier_lock = threading.Lock()


@dataclass(frozen=True)
class Detection:
    language: str | None  # ISO 639-1 code, or None when there is too little to tell
    confidence: float  # 0..1: the classifier's probability for this language
    supported: bool

    @property
    def name(self) -> str:
        return NAMES.get(self.language or "", "an unknown language")


def _classifier():
    global _identifier
    with _identifier_lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            identifier.set_languages(list(NAMES))
            _identifier = identifier
        return _identifier


def detect(text: str) -> Detection:
    """The most likely language of ``text``; ``language`` is None when nothing tells (no letters,
    or none of the letter sequences the model knows: every language then scores the same)."""
    if not any(ch.isalpha() for ch in text):
        return Detection(None, 0.0, False)
    identifier = _classifier()
    language, confidence = identifier.classify(text)
    if confidence <= 1.0 / len(identifier.nb_classes) + 1e-6:
        return Detection(None, 0.0, False)
    return Detection(language, round(confidence, 4), language in SUPPORTED)


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
