"""A reasoning model's reply through the chat session: the thinking is stored apart from the
answer, search and the next turn's prompt see the answer only, exports keep both, and a reply
cut inside its thinking says so. The engine's stream is scripted (the default models do not
think); the parser itself is tested in test_reasoning.py."""

from __future__ import annotations

import json
from dataclasses import replace

from assistant.chat.events import Reasoning, ReplyDone, Token
from assistant.chat.reasoning import META_OPENS_THINK, METRIC_THINKING_S, METRIC_UNCLOSED, template_flags
from assistant.chat.session import ChatSession
from assistant.history.archive import History, conversation_markdown
from tests.assistant.test_chat_session import ScriptedHandle, scripted

THINKING_REPLY = ["<th", "ink>The user wants", " the capital. Zanzibar", "quux is a made-up word.</th", "ink>",
                  "\n\n", "Paris is the ", "capital."]


def test_a_reasoning_reply_keeps_its_thinking_apart_from_its_answer(services):
    prompts = scripted(services, ScriptedHandle(list(THINKING_REPLY)))
    session = ChatSession(services)
    events = list(session.turn("What is the capital of France?"))
    assert "".join(e.text for e in events if isinstance(e, Token)) == "Paris is the capital."
    assert "".join(e.text for e in events if isinstance(e, Reasoning)).startswith("The user wants")
    done = events[-1]
    assert isinstance(done, ReplyDone)
    stored = services.conversations.messages(session.conversation_id)[-1]
    assert stored.text == "Paris is the capital."
    assert stored.reasoning == "The user wants the capital. Zanzibarquux is a made-up word."
    assert stored.metrics[METRIC_THINKING_S] >= 0 and METRIC_UNCLOSED not in stored.metrics

    # Search finds the answer, never the thinking.
    history = History(services.store)
    assert [h.message_id for h in history.search("capital") if h.kind == "message"] \
        and stored.id in [h.message_id for h in history.search("Paris")]
    assert history.search("Zanzibarquux") == []

    # The next turn's prompt carries the answer only: these models' templates expect that.
    list(session.turn("And of Italy?"))
    assert prompts[1][-2:] == [{"role": "assistant", "content": "Paris is the capital."},
                               {"role": "user", "content": "And of Italy?"}]
    assert "Zanzibarquux" not in json.dumps(prompts[1])

    # Exports keep it: JSON as a field of its own, Markdown as a quote before the answer.
    document = history.export_document(session.conversation_id)
    exported = [m for m in document["conversations"][0]["messages"] if m["id"] == stored.id][0]
    assert exported["text"] == stored.text and exported["reasoning"] == stored.reasoning
    conversation = services.conversations.get(session.conversation_id)
    markdown = conversation_markdown(conversation, services.conversations.messages(session.conversation_id))
    assert "> **Reasoning**" in markdown and "> The user wants" in markdown

    # And an import brings it back apart.
    services.conversations.delete(session.conversation_id)
    services.conversations.empty_trash()
    history.import_document(document)
    assert services.conversations.get_message(stored.id).reasoning == stored.reasoning


def test_a_reply_cut_inside_its_thinking_keeps_it_as_reasoning_with_a_note(services):
    scripted(services, ScriptedHandle(["<think>", "Let me count: one, two,", " three"]))
    session = ChatSession(services)
    events = list(session.turn("Count to ten."))
    stored = services.conversations.messages(session.conversation_id)[-1]
    assert stored.text == "" and stored.reasoning == "Let me count: one, two, three"
    assert stored.metrics[METRIC_UNCLOSED] is True
    assert not [e for e in events if isinstance(e, Token)]


def test_a_template_that_opens_the_block_makes_the_reply_start_as_reasoning(services):
    scripted(services, ScriptedHandle(["Two and two", " make four.", "</think>", "4"]))
    model = services.library.for_task("chat")
    opened = replace(model, metadata={**model.metadata, META_OPENS_THINK: True})
    services.library.get = lambda _name: opened  # the record as an R1 distill's import leaves it
    session = ChatSession(services, model_id=model.id)
    events = list(session.turn("2+2?"))
    assert [e.text for e in events if isinstance(e, Token)] == ["4"]
    assert services.conversations.messages(session.conversation_id)[-1].reasoning == "Two and two make four."


def test_a_reply_without_thinking_is_unchanged(services):
    scripted(services, ScriptedHandle(["Just ", "an answer."]))
    session = ChatSession(services, persist=False)
    events = list(session.turn("Hi"))
    assert isinstance(events[-1], ReplyDone)
    assert events[-1].message.text == "Just an answer." and events[-1].message.reasoning == ""
    assert not any(isinstance(e, Reasoning) for e in events)


def test_import_reads_whether_a_template_reasons_and_opens_the_block():
    r1_distill = ("{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
                  "{% else %}<｜Assistant｜>{{ m['content'] }}{% endif %}{% endfor %}"
                  "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}")
    qwen3_like = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if '</think>' in m['content'] %}"
                  "{{ m['content'].split('</think>')[-1] }}{% else %}{{ m['content'] }}{% endif %}<|im_end|>\n"
                  "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    assert template_flags(r1_distill) == {"reasoning": True, META_OPENS_THINK: True}
    assert template_flags(qwen3_like) == {"reasoning": True, META_OPENS_THINK: False}
    assert template_flags("{{ messages[0]['content'] }}") == {"reasoning": False, META_OPENS_THINK: False}


def test_the_terminal_says_the_model_is_thinking_and_prints_the_answer(services, capsys):
    from assistant.cli.main import _print_reply

    scripted(services, ScriptedHandle(list(THINKING_REPLY)))
    written: list[str] = []
    assert _print_reply(ChatSession(services).turn("What is the capital of France?"), written.append, False)
    assert "".join(written) == "Paris is the capital.\n"
    assert capsys.readouterr().err.count("[thinking…]") == 1


def test_the_thinking_is_saved_while_it_streams(services):
    from assistant.history.conversations import Conversations

    now = [0.0]
    conversations = Conversations(services.store, monotonic=lambda: now[0])
    conversation = conversations.create("thinking")
    writer = conversations.begin_reply(conversation.id, model="m")
    assert not writer.append_reasoning("Let me")  # within the save interval: kept in memory
    now[0] += 1.0
    assert writer.append_reasoning(" think.")  # a crash from here on keeps the thinking so far
    saved = conversations.get_message(writer.message_id)
    assert (saved.status, saved.reasoning, saved.text) == ("streaming", "Let me think.", "")
    writer.append("Done.")
    final = writer.finish({})
    assert (final.reasoning, final.text) == ("Let me think.", "Done.")
