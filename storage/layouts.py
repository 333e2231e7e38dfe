"""Preference and demonstration sets in the layouts teams have.

Preference pairs are read into one shape: a prompt (the conversation before the judged answer,
as messages), the chosen and the rejected answer, optional 1-10 scores and a category:

- TRL's explicit prompt: `prompt` / `chosen` / `rejected`, text or conversational messages;
- TRL's implicit prompt: `chosen` / `rejected` only, the prompt being what they share, split the
  way TRL's `extract_prompt` splits it (the longest common prefix, of messages or of text);
- Anthropic HH-RLHF: `chosen` / `rejected` transcripts ("\\n\\nHuman: ... \\n\\nAssistant: ..."),
  read into messages, then split as above (what TRL's hh-rlhf script does);
- two answers and a winner: `prompt`, `response_a`, `response_b` and `winner` (`model_a`,
  `model_b`, `tie`...; or Kaggle's `winner_model_a` / `winner_model_b` / `winner_tie` flags),
  multi-turn when the prompt and responses are JSON lists of turns, as Chatbot Arena exports are;
  or `conversation_a` / `conversation_b` message lists and a `winner`. Other column names map
  with `--columns`. HH samples flattened into such columns (`Question` / `Answer1` / `Answer2`)
  keep HH's role labels in each cell: the prompt is read as a transcript and the answers lose
  their "Assistant:", counted.

Rows that hold no preference between two answers (a tie, the same answer twice, conversations
that part before their last turn, as multi-turn arena battles do) are skipped and counted.

Demonstrations (a prompt and a reference answer) come as TRL's SFT formats (conversational
`messages`, whose last message is the assistant's answer; or `prompt` / `completion`, text or
messages) or Alpaca's `instruction` / `input` / `output`.

TRL's own helpers import torch, which `storage` never does; these few lines follow them.
"""
import json
import re

from .inputs import InputError, whole_number
from .queries import MAX_CORRECTION_CHARS, MAX_PROMPT_CHARS

FIELDS = ("prompt", "chosen", "rejected", "response_a", "response_b", "conversation_a", "conversation_b",
          "winner", "score_a", "score_b", "score_chosen", "score_rejected", "category")
HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")
WINNER = {"model_a": "a", "a": "a", "response_a": "a", "1": "a", "answer1": "a", "answer_a": "a",
          "model_b": "b", "b": "b", "response_b": "b", "2": "b", "answer2": "b", "answer_b": "b",
          "tie": "tie", "tie (bothbad)": "tie", "both_bad": "tie", "both bad": "tie"}
MAX_CONVERSATION_CHARS = 4 * MAX_PROMPT_CHARS  # a multi-turn prompt carries earlier answers too


class Skipped(Exception):
    """A well-formed row that holds no preference between two answers: a tie, the same answer
    twice, or two conversations that part before their last turn. Counted, not imported."""


def parse_columns(spec: str | None) -> dict[str, str]:
    """`--columns prompt=Question,response_a=Answer1,...` as {our name: the file's column}."""
    mapping = {}
    for item in filter(None, (spec or "").split(",")):
        ours, _, theirs = item.partition("=")
        if ours.strip() not in FIELDS or not theirs.strip():
            raise InputError(f"--columns takes NAME=COLUMN pairs, NAME one of {', '.join(FIELDS)}; not {item!r}")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def _hh_messages(text: str) -> list[dict] | None:
    """An HH transcript as messages; a trailing empty "Assistant:" (the turn to answer, as
    prompt columns in HH-derived sets end) is dropped. Text with no Human turn is not one."""
    parts = HH_TURN.split("\n\n" + text.lstrip("\n"))
    if len(parts) < 3 or parts[0].strip() or "Human" not in parts[1::2]:
        return None
    messages = [{"role": "user" if who == "Human" else "assistant", "content": said.strip()}
                for who, said in zip(parts[1::2], parts[2::2])]
    return messages[:-1] if messages[-1]["role"] == "assistant" and not messages[-1]["content"] else messages


def _messages(value) -> list[dict] | str:
    """Messages from a conversational list or an HH transcript; plain text stays text."""
    if isinstance(value, list) and all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    if isinstance(value, str):
        return _hh_messages(value) or value
    raise ValueError("expected text or a list of {role, content} messages")


def _unlabelled(answer: str) -> tuple[str, bool]:
    """An answer without the "Assistant:" label a flattened HH file starts it with, and whether
    it had one: a round would otherwise teach the policy to begin its answers with it."""
    text = answer.lstrip() if isinstance(answer, str) else ""
    if not text.startswith("Assistant:"):
        return answer, False
    return text[len("Assistant:"):].lstrip(" \t\n"), True


def _shared(a, b) -> int:
    """Length of the common prefix, as TRL's extract_prompt finds it (a space before the split
    belongs to the answer)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n - 1 if isinstance(a, str) and n and a[n - 1] == " " else n


def _answer(value) -> str:
    """The judged answer: text, or the last message (an assistant's)."""
    if isinstance(value, list):
        if len(value) != 1 or value[0]["role"] != "assistant":
            raise ValueError("each answer must be one assistant message after the shared prompt")
        return value[0]["content"]
    return value


def _explicit(record: dict) -> tuple[list[dict], str, str]:
    prompt = _messages(record["prompt"])
    prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    answers = []
    for key in ("chosen", "rejected"):  # text answers stay text, even one starting "Assistant:"
        value = record[key] if isinstance(record[key], str) else _messages(record[key])
        answers.append(value[-1]["content"] if isinstance(value, list) else value)
    return prompt, answers[0], answers[1]


def _implicit(record: dict) -> tuple[list[dict], str, str]:
    chosen, rejected = _messages(record["chosen"]), _messages(record["rejected"])
    if type(chosen) is not type(rejected):
        raise ValueError("chosen and rejected must both be text or both be conversations")
    if chosen == rejected:
        raise Skipped("chosen and rejected are the same")
    n = _shared(chosen, rejected)
    prompt = chosen[:n]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt.strip()}]
    elif len(chosen) - n != 1 or len(rejected) - n != 1:
        raise Skipped("the conversations part before their last turn")
    return prompt, _answer(chosen[n:]), _answer(rejected[n:])


def _turns(value) -> list[str]:
    """Arena exports write multi-turn prompts and answers as JSON lists of strings."""
    if isinstance(value, str) and value.startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [value]
    if isinstance(value, list):
        if not value or not all(isinstance(t, str) for t in value):
            raise ValueError("a list of turns holds something that is not text (a null answer?)")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected text, not {type(value).__name__}")
    return [value]


def _winner(record: dict) -> str:
    if "winner" in record:
        value = record["winner"]
        if isinstance(value, float) and value.is_integer():  # 1.0 from a Parquet or pandas column
            value = int(value)
        winner = None if isinstance(value, bool) else WINNER.get(str(value).strip().casefold())
        if winner is None:
            raise ValueError(f"winner {record['winner']!r} is not one of model_a, model_b, tie (or a, b, 1, 2; "
                             "map 0/1 labels to these first)")
        return winner
    flags = {k: str(record.get(f"winner_model_{k}", record.get(f"winner_{k}", ""))).strip() for k in ("a", "b", "tie")}
    winners = [k for k, v in flags.items() if v in ("1", "True", "true", "1.0")]
    if len(winners) != 1:
        raise ValueError("no winner: give `winner`, or exactly one of winner_model_a, winner_model_b, winner_tie")
    return winners[0]


def _two_answers(record: dict) -> tuple[list[dict], str, str, bool, int]:
    """(prompt, chosen, rejected, whether A won, HH labels removed), with earlier turns kept in
    the prompt.

    Files that flatten HH into columns keep its labels in every cell: a prompt cell that reads as
    an HH transcript ("Human: ...", often ending in the empty "Assistant:" turn to answer, perhaps
    with earlier turns) becomes its messages, and its answers lose their leading "Assistant:"."""
    winner = _winner(record)
    if winner == "tie":
        raise Skipped("a tie")
    prompts, a, b = _turns(record["prompt"]), _turns(record["response_a"]), _turns(record["response_b"])
    if not (len(prompts) == len(a) == len(b)):
        raise ValueError("the prompt and both responses must have as many turns")
    if a[:-1] != b[:-1]:
        raise Skipped("the answers differ before their last turn: a whole conversation was judged, not one answer")
    answer_a, answer_b, labels = a[-1], b[-1], 0
    transcript = _hh_messages(prompts[0]) if len(prompts) == 1 else None
    if transcript:
        (answer_a, in_a), (answer_b, in_b) = _unlabelled(answer_a), _unlabelled(answer_b)
        prompt, labels = transcript, 1 + in_a + in_b
    else:
        history = [m for user, said in zip(prompts[:-1], a[:-1])
                   for m in ({"role": "user", "content": user}, {"role": "assistant", "content": said})]
        prompt = history + [{"role": "user", "content": prompts[-1]}]
    return (prompt, answer_a, answer_b, True, labels) if winner == "a" else (prompt, answer_b, answer_a, False, labels)


def _score(record: dict, key: str):
    value = record.get(key)
    return None if value in (None, "") else whole_number(key, value, 1, 10)


def _checked_prompt(prompt: list[dict]) -> list[dict]:
    if not prompt or prompt[-1]["role"] != "user" or not str(prompt[-1]["content"]).strip():
        raise ValueError("the prompt must end with a user message that has text")
    if sum(len(str(m["content"])) for m in prompt) > MAX_CONVERSATION_CHARS:
        raise ValueError(f"the prompt is longer than {MAX_CONVERSATION_CHARS} characters")
    return prompt


def _checked_answer(text) -> str:
    text = (text or "").strip() if isinstance(text, str) or text is None else None
    if text is None:
        raise ValueError("an answer must be text")
    if not text:
        raise ValueError("an answer is empty")
    if len(text) > MAX_CORRECTION_CHARS:
        raise ValueError(f"an answer is longer than {MAX_CORRECTION_CHARS} characters")
    return text


def parse_demonstration(record, where: str) -> dict:
    """One row as {prompt (messages), answer, category}."""
    if not isinstance(record, dict):
        raise ValueError("expected an object with named fields")
    if "messages" in record:
        messages = _messages(record["messages"])
        if isinstance(messages, str) or len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise ValueError("messages must end with the assistant's answer after a user message")
        prompt, answer = messages[:-1], messages[-1]["content"]
    elif "prompt" in record and "completion" in record:
        prompt = _messages(record["prompt"])
        prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        completion = _messages(record["completion"])
        answer = completion[-1]["content"] if isinstance(completion, list) else completion
    elif "instruction" in record and "output" in record:
        instruction, extra = record["instruction"], record.get("input") or ""
        if not isinstance(instruction, str) or not isinstance(extra, str):
            raise ValueError("instruction and input must be text")
        prompt = [{"role": "user", "content": instruction.strip() + (f"\n\n{extra.strip()}" if extra.strip() else "")}]
        answer = record["output"]
    elif "text" in record:
        raise ValueError("a `text`-only row has no prompt to answer: give messages, prompt/completion, "
                         "or instruction/output")
    else:
        raise ValueError("expected messages, prompt and completion, or instruction and output")
    category = record.get("category")
    return {"prompt": _checked_prompt(prompt), "answer": _checked_answer(answer),
            "category": category if isinstance(category, str) else None}


def parse(record, where: str, columns: dict[str, str]) -> dict:
    """One row as {prompt (messages), chosen, rejected, score_chosen, score_rejected, category,
    labels_removed (how many of its texts lost an HH role label)}; raises Skipped for a tie,
    ValueError or InputError saying what is wrong."""
    if not isinstance(record, dict):
        raise ValueError("expected an object with named fields")
    record = {k: v for k, v in record.items() if k not in columns.values() and k not in columns} | \
             {ours: record[theirs] for ours, theirs in columns.items() if theirs in record}
    labels = 0  # only flattened HH cells carry labels to remove
    if {"conversation_a", "conversation_b"} <= record.keys():  # lmsys/chatbot_arena_conversations
        record = record | {"chosen": record["conversation_a"], "rejected": record["conversation_b"]}
        winner = _winner(record)
        if winner == "tie":
            raise Skipped("a tie")
        prompt, a, b = _implicit(record)
        chosen, rejected = (a, b) if winner == "a" else (b, a)
        scores = (None, None)
    elif {"response_a", "response_b"} <= record.keys():
        prompt, chosen, rejected, a_won, labels = _two_answers(record)
        scores = (_score(record, "score_a"), _score(record, "score_b"))
        scores = scores if a_won else scores[::-1]
    elif {"chosen", "rejected"} <= record.keys():
        prompt, chosen, rejected = _explicit(record) if record.get("prompt") else _implicit(record)
        scores = (_score(record, "score_chosen"), _score(record, "score_rejected"))
    else:
        raise ValueError("no answers: expected chosen and rejected, response_a and response_b with a winner, "
                         "or conversation_a and conversation_b with a winner (--columns maps other names)")
    prompt, chosen, rejected = _checked_prompt(prompt), _checked_answer(chosen), _checked_answer(rejected)
    if chosen == rejected:
        raise Skipped("chosen and rejected are the same answer")
    category = record.get("category")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "score_chosen": scores[0],
            "score_rejected": scores[1], "category": category if isinstance(category, str) else None,
            "labels_removed": labels}
