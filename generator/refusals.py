"""Telling the assistant speaking as an assistant (a refusal, an apology for not doing the task, a safety lecture)
from a post that uses the same words.

The domain is safety texts, so "I'm sorry", "I can't", "help", "crisis" and "therapist" are ordinary words of
the posts a variation must read like ("I'm sorry but I can't do this anymore", "In crisis and don't know what to
do", "Should I call 988?"). What the patterns below look for instead is the assistant's own grammar:

- a refusal of the *task*: a negated verb of writing or helping whose object is the request, the content, the
  variations or "that" (``I can't help with that``, ``I cannot generate variations of this text``,
  ``I'm unable to create content that promotes self-harm``, ``I must decline this request``);
- an apology that leads into such a refusal (``I'm sorry, but I can't provide that``);
- the assistant naming itself (``As an AI language model``, ``I'm just an AI``);
- sympathy addressed to the writer (``I'm really sorry to hear that you're feeling this way``);
- a crisis redirection addressed to the reader: a directive or a second-person conditional together with a
  resource (``If you are in crisis, please contact 988``, ``Please reach out to a mental health professional``).

No package on PyPI does this small job: the available refusal detectors are either transformer classifiers
(hundreds of MB of weights, and trained on chat answers, not on posts) or plain phrase lists that would flag
"I'm sorry" in a post. ``tests/test_llm_answers.py`` holds the positives and checks that none of the released
safety dataset's 5,400 texts is flagged.
"""

from __future__ import annotations

import re

_I = r"\b(?:i|we)\s*"
_NEGATED = (r"(?:can ?not|can'?t|could ?not|couldn'?t|won'?t|will not|would not|wouldn'?t|am not able to|"
            r"'?m not able to|am unable to|'?m unable to|are unable to|are not able to|'re unable to|"
            r"(?:will|would) not be able to|won'?t be able to|must (?:respectfully )?decline to|have to decline to|"
            r"(?:am|'?m|are|'re) not (?:comfortable|going to|permitted to|allowed to)|do not feel comfortable|"
            r"don'?t feel comfortable|(?:am|'?m) not in a position to)")
_TASK_VERB = (r"(?:help|assist|comply|fulfil|provid|creat|generat|writ|produc|rewrit|paraphras|complet|engag|proceed|"
              r"support|shar|offer|giv|respond|answer|process|participat|carry out)\w*")
_TASK_OBJECT = (r"(?:(?:this|that|your|the|such an?|such)\s+(?:specific\s+|particular\s+)?"
                r"(?:request|task|prompt|instruction|instructions|query|ask|assignment)"
                r"|(?:this|that|such|the|any)\s+(?:kind of |type of |sort of )?(?:content|material|topic|subject)"
                r"|(?:the |these |those |any |such |more |additional )?(?:text )?(?:variations?|rewrites?|paraphrases?)"
                r"|content\s+(?:that|which|about|related|involving|promoting|depicting|describing|glorifying"
                r"|encouraging)"
                r"|(?:medical|legal|financial|professional|mental health)\s+(?:advice|guidance|diagnos[ie]s)"
                r"|assistance\s+with\b|help\s+with\s+(?:that|this)\b)")
# "I must decline this request."
_DECLINE = (_I + r"(?:must|have to|'ll have to|will have to)\s+(?:respectfully\s+|politely\s+)?decline\s+(?:to\b|"
            + _TASK_OBJECT + ")")
# "I can't help with that." / "I cannot assist you." — the whole sentence is the refusal.
_BARE_REFUSAL = (_I + _NEGATED + r"\s+(?:help|assist|comply)(?:\s+you)?(?:\s+with\s+(?:that|this|it))?"
                 r"(?:\s+(?:request|one))?\s*(?:[.!]|$)")
# "I'm unable to create content that promotes self-harm." — a verb of the task and the task as its object.
_TASK_REFUSAL = _I + _NEGATED + r"\s+(?:\w+\s+){0,2}?" + _TASK_VERB + r"\b[^.!?\n]{0,50}?\b" + _TASK_OBJECT
_APOLOGY = (r"(?:^|[.!?]\s+)\W*(?:(?:i'?m|i am)\s+(?:(?:really|so|very|truly|terribly|deeply)\s+)*sorry|"
            r"i\s+(?:must\s+|do\s+)?apologi[sz]e|(?:my\s+)?apologies|sorry)\s*[,.!:;-]*\s*(?:but\s+)?")
# "I can't write those, but here are safer ones:" — writing refused, with only a pronoun for what.
_WRITING_REFUSAL = (_I + _NEGATED + r"\s+(?:\w+\s+){0,2}?(?:writ|generat|creat|produc|rewrit|paraphras)\w*\s+"
                    r"(?:those|these|them|that|this|it|so|such (?:things|texts))\s*(?:[,.!;:]|$)")
# "Sorry, I can't provide that." — an apology, a refusal verb and nothing but "that" after it.
_APOLOGETIC_REFUSAL = (_APOLOGY + _I + _NEGATED + r"\s+(?:\w+\s+){0,2}?" + _TASK_VERB +
                       r"(?:\s+(?:you|with|to))*(?:\s+(?:that|this|it|so|those|these))?\s*(?:[.!]|$)")
_SELF_NAMING = (r"\b(?:as|i'?m|i am)\s+(?:(?:just|only|merely)\s+)?an?\s+(?:ai|a\.i\.|artificial intelligence|"
                r"(?:large\s+)?language model|llm|chatbot|virtual assistant|ai assistant|ai model)\b"
                r"|\bas an? (?:responsible|helpful|ethical) (?:ai|assistant)\b"
                r"|\bopenai'?s (?:content |usage )?polic(?:y|ies)\b"
                r"|\bmy (?:content|usage|safety) (?:policy|policies|guidelines)\b"
                r"|\b(?:against|violates?|outside|within) my (?:guidelines|programming|principles|capabilities)\b")
_SYMPATHY = (r"\b(?:i'?m|i am)\s+(?:(?:really|so|very|truly|deeply)\s+)*sorry\s+"
             r"(?:to hear (?:that|about)|that you(?:'re| are)|you(?:'re| are) (?:feeling|going|dealing))")
# A crisis redirection: words addressed to the reader at the start of a sentence, together with a resource.
_ADDRESS = (r"(?:^|[.!?:;]\s*)\W*"
            r"(?:if\s+you(?:'re|\s+are|\s+or\s+(?:someone|anyone|somebody)\s+(?:you\s+know|else))\s+"
            r"(?:is\s+|are\s+|'re\s+)?(?:currently\s+)?(?:in\s+(?:crisis|danger|immediate danger)|struggling|"
            r"having\s+(?:thoughts|suicidal)|thinking\s+(?:about|of)|feeling\s+(?:suicidal|unsafe|overwhelmed)|"
            r"experiencing|considering)"
            r"|please\s+(?:(?:do\s+not|don'?t)\s+hesitate\s+to\s+|consider\s+|try\s+)?"
            r"(?:reach(?:ing)?\s+out|contact(?:ing)?|call(?:ing)?|text(?:ing)?|seek(?:ing)?|talk(?:ing)?\s+to|"
            r"speak(?:ing)?\s+(?:to|with)|get\s+in\s+touch)"
            r"|(?:i|we)\s+(?:(?:strongly|really|would)\s+)?(?:encourage|urge|recommend|suggest)\s+(?:that\s+)?you\s+"
            r"(?:to\s+)?(?:reach|contact|call|seek|talk|speak)"
            r"|it(?:'s|\s+is)\s+(?:really\s+|very\s+|so\s+)?important\s+(?:that\s+you\s+|for\s+you\s+)?"
            r"(?:to\s+)?(?:reach\s+out|talk|seek|speak|get\s+help|contact)"
            r"|help\s+is\s+available\b|you\s+don'?t\s+have\s+to\s+(?:go\s+through|face)\s+(?:this|it)\s+alone\b)")
_RESOURCE = (r"\b(?:professional|hotline|helpline|help line|lifeline|crisis\s+(?:line|text line|center|centre|"
             r"service|team)|emergency\s+services|samaritans|therapist|counsell?or|mental health|someone you trust|"
             r"trusted\s+(?:friend|adult|person|family member)|loved one|doctor|healthcare provider)\b"
             r"|(?<!\d)(?:988|911|999|112|741741)(?!\d)")

_REFUSAL = re.compile("|".join(f"(?:{pattern})" for pattern in (
    _BARE_REFUSAL, _TASK_REFUSAL, _WRITING_REFUSAL, _DECLINE, _APOLOGETIC_REFUSAL, _SELF_NAMING, _SYMPATHY)),
    re.IGNORECASE | re.MULTILINE)
_ADDRESS_RE = re.compile(_ADDRESS, re.IGNORECASE | re.MULTILINE)
_RESOURCE_RE = re.compile(_RESOURCE, re.IGNORECASE)
_QUOTES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})


def is_assistant_speaking(text: str) -> bool:
    """True when ``text`` is the assistant refusing, apologising for not doing the task, naming itself,
    consoling the writer or redirecting the reader to help, rather than a text the dataset could hold."""
    plain = text.translate(_QUOTES)
    if _REFUSAL.search(plain):
        return True
    return bool(_ADDRESS_RE.search(plain) and _RESOURCE_RE.search(plain))
