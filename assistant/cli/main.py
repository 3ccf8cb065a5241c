"""The `assistant` command line. Runs on the main thread of its own process.

Every error a user can cause ends as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import assistant  # noqa: F401  (installs the privacy guard first)
from assistant.app import Services, build_services
from assistant.chat.events import Reasoning, ReplyDone, ReplyFailed, Token
from assistant.chat.reasoning import UNCLOSED_NOTE
from assistant.chat.incognito import IncognitoConversations
from assistant.chat.session import ChatSession, sampling_with
from assistant.cli.documents import add_documents_commands
from assistant.cli.history import add_history_commands, store_error_message
from assistant.cli.model_fit import with_fit_columns
from assistant.cli.model_settings import add_model_settings_command
from assistant.cli.study import add_study_commands
from assistant.cli.tasks import add_task_commands
from assistant.cli.train import add_train_commands
from assistant.config import default_paths
from assistant.errors import ChatError, CorruptDatabaseError, LibraryError, StoreError, is_expected, user_message
from assistant.models.library import ModelRecord
from assistant.store import Store
from assistant.cli.vault import add_vault_commands, cli_unlock, run_vault_command
from assistant.vault.cipher import dbapi
from assistant.wording import human_count, human_size, metrics_line
from engine.settings import SamplingParams

EXIT_USER_ERROR = 2


def _print_err(message: str) -> None:
    print(f"assistant: {message}", file=sys.stderr)


# ----- models ---------------------------------------------------------------------------
def cmd_models_list(args, services: Services) -> int:
    records = services.library.list()
    routes = services.library.routes()
    rows = [("ID", "NAME", "ARCH", "PARAMS", "QUANT", "CTX", "SIZE", "SOURCE", "TASKS")]
    for m in records:
        meta = m.metadata
        rows.append((m.id, m.display_name, str(meta.get("architecture") or "?"), human_count(meta.get("parameter_count")),
                     str(meta.get("quantization") or "?"), str(meta.get("context_length") or "?"),
                     human_size(m.size_bytes), _source_text(m), ",".join(m.tasks)))
    rows = with_fit_columns(rows, records, services)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if routes:
        print("\nChosen for tasks: " + ", ".join(f"{t} -> {m}" for t, m in sorted(routes.items())))
    return 0


def _source_text(m: ModelRecord) -> str:
    source = f"{m.linked_from} (linked)" if m.linked_from else m.source
    return f"{source}, MISSING" if m.missing else source


def _print_model(m: ModelRecord, full_licence: bool = False) -> None:
    meta = m.metadata
    fields = [
        ("id", m.id), ("name", m.display_name), ("path", m.path), ("source", _source_text(m)),
        ("architecture", meta.get("architecture")), ("parameters", human_count(meta.get("parameter_count"))),
        ("quantization", meta.get("quantization")), ("context length", meta.get("context_length")),
        ("layers", meta.get("block_count")), ("vocabulary", meta.get("vocab_size")),
        ("file size", human_size(m.size_bytes)), ("sha256", m.sha256 or "-"),
        ("tasks", ", ".join(m.tasks)), ("licence", meta.get("licence") or meta.get("licence_name") or "-"),
    ]
    for key, value in fields:
        print(f"{key:>15}: {value if value not in (None, '') else '-'}")
    if m.missing:
        print(f"\n{m.missing_message()} (`assistant models locate {m.id} PATH` or `assistant models remove {m.id}`)")
    if m.licence_text:
        text = m.licence_text if full_licence else m.licence_text[:400] + ("…" if len(m.licence_text) > 400 else "")
        print(f"\nLicence text{'' if full_licence else ' (--licence for all of it)'}:\n{text}")


def cmd_models_info(args, services: Services) -> int:
    _print_model(services.library.get(args.name), full_licence=args.licence)
    return 0


def cmd_models_add(args, services: Services) -> int:
    record = services.library.add(args.path, n_ctx=services.settings.engine.n_ctx)
    print(f"Added {record.id}.")
    _print_model(record)
    return 0


def cmd_models_remove(args, services: Services) -> int:
    record = services.library.remove(args.name, delete_file=args.delete_file, confirmed=args.yes)
    print(f"Removed {record.id} from the library" + (f" and deleted {record.path}." if args.delete_file else " (the file stays on disk)."))
    return 0


def cmd_models_discover(args, services: Services) -> int:
    """List the GGUF models other tools keep; with --link, link some or all of them in place."""
    from assistant.models import views

    for folder in args.add_folder or []:
        services.library.add_model_folder(folder)
    view = views.discover_models(services)
    rows = [("#", "SOURCE", "NAME", "SIZE", "LIBRARY")]
    for number, found in enumerate(view.found, 1):
        size = human_size(found.size_bytes) + (f" ({found.parts} parts)" if found.parts > 1 else "")
        rows.append((str(number), found.source_label, found.name, size, view.linked.get(found.path, "-")))
    if view.found:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    else:
        print("No GGUF models found in " + (", ".join(str(loc.root) for loc in view.searched) or "any known folder") + ".")
    if args.verbose:
        for found in view.found:
            for other in found.also_in:
                print(f"  #{view.found.index(found) + 1} is also {other}")
    for line in view.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if not args.link:
        if view.found:
            print("\nLink one with `assistant models discover --link NUMBER` (or `--link all`); files stay where they are.")
        return 0
    wanted = view.found if "all" in args.link else []
    for choice in (c for c in args.link if c != "all"):
        if not choice.isdigit() or not 1 <= int(choice) <= len(view.found):
            raise LibraryError(f"{choice!r} is not one of the numbers listed (1 to {len(view.found)}).")
        wanted.append(view.found[int(choice) - 1])
    outcome = views.link_models(services, wanted)
    for record in outcome.added:
        if record.linked_from:
            print(f"Linked {record.id} ({record.path}); the file stays where it is.")
        else:
            print(f"Already in the library as {record.id} ({record.path}).")
    for error in outcome.errors:
        _print_err(error)
    return EXIT_USER_ERROR if outcome.errors else 0


def cmd_models_locate(args, services: Services) -> int:
    record = services.library.locate(args.name, args.path, n_ctx=services.settings.engine.n_ctx)
    print(f"{record.id} now uses {record.path}.")
    return 0


def cmd_models_prepare(args, services: Services | None) -> int:
    """Join the default pack's files in the models folder (the slow part of a first start). It
    touches no database, so the set-up (`make`) needs no key and asks no passphrase; the app
    registers the joined files when it next opens the library."""
    from assistant.errors import StudentError
    from assistant.tasks import sentiment_default
    from engine import model_pack

    models_dir = default_paths().ensure().models_dir
    for model_id, path in model_pack.prepare_pack(models_dir).items():
        print(f"ready: {model_id}  ({path})")
    # The default sentiment student is built once here, from the shipped public lines (about a
    # minute); without it the Sentiment page still works with the language model alone.
    if sentiment_default.find_default_student(models_dir) is None:
        print("building the default sentiment student (once, about a minute)…", flush=True)
    try:
        student = sentiment_default.ensure_default_student(models_dir, model_pack.locate(model_pack.MINILM, models_dir))
    except StudentError as error:
        print(f"The default sentiment student could not be built: {error} The Sentiment page will use the "
              "language model alone.", file=sys.stderr)
    else:
        print(f"ready: default sentiment student  ({student})" if student else
              "no default sentiment student: this installation cannot train (the language model answers)")
    return 0


def cmd_models_route(args, services: Services) -> int:
    services.library.set_route(args.task, None if args.model in ("auto", "default") else args.model)
    print(f"{args.task} -> {services.library.for_task(args.task).id}")
    return 0


# ----- chat -----------------------------------------------------------------------------
def _sampling_from_args(args, services: Services, model: ModelRecord) -> SamplingParams:
    """The app's sampling (over the model's own defaults, as in the window) with the flags given."""
    from assistant.chat import model_defaults
    from assistant.models import model_settings

    base = model_defaults.under(services.settings.sampling, model_defaults.for_model(model))
    base = model_settings.for_chat(model_settings.load(services.store, model.id), model, base)
    overrides = {name: getattr(args, name, None)
                 for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "max_tokens")}
    if args.stop:
        overrides["stop"] = list(args.stop)
    try:
        return sampling_with(base, **overrides)
    except ValueError as exc:
        raise LibraryError(str(exc)) from exc


def _print_reply(events, write: Callable[[str], None], show_metrics: bool) -> bool:
    """Stream one reply of a :class:`ChatSession` to the terminal (the session stores it as it
    streams); Ctrl+C stops the reply, not the program. True when a reply was kept."""
    thinking = False  # a reasoning model's thinking is under way: say so on stderr, not its words
    try:
        for event in events:
            if isinstance(event, Reasoning) and not thinking:
                thinking = True
                print("[thinking…]", file=sys.stderr, flush=True)
            elif isinstance(event, Token):
                write(event.text)
            elif isinstance(event, ReplyDone):
                write("\n")
                if event.message is not None and event.message.reasoning and not event.message.text:
                    print(f"[{UNCLOSED_NOTE}]", file=sys.stderr)
                if show_metrics:
                    print(f"[{metrics_line(event.metrics)}]", file=sys.stderr)
                return True
            elif isinstance(event, ReplyFailed):
                write("\n")
                if event.kind == "cancelled":
                    print("[stopped]", file=sys.stderr)
                else:
                    _print_err(event.text)
                return bool(event.message is not None and event.message.text)
    except KeyboardInterrupt:
        # Raised inside the session's generator, whose cleanup stopped the engine and kept
        # what arrived, marked interrupted.
        write("\n")
        print("[stopped]", file=sys.stderr)
    return True


def cmd_chat(args, services: Services) -> int:
    model = services.library.get(args.model) if args.model else services.library.for_task("chat")
    sampling = _sampling_from_args(args, services, model)
    system = args.system if args.system is not None else services.settings.default_system_prompt

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def new_session() -> ChatSession:
        # Incognito: the conversation lives in this process's memory only (never in history,
        # search or the database's WAL) and is forgotten at /reset and on exit.
        kept_in = IncognitoConversations() if args.incognito else None
        return ChatSession(services, model_id=model.id, system_prompt=system, documents=None, sampling=sampling,
                           conversations=kept_in)

    session = new_session()
    if args.question:
        _print_reply(session.turn(" ".join(args.question)), write, not args.quiet)
        return 0

    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Chatting with {model.display_name}. Ctrl+C stops a reply; /regenerate writes the last reply "
              "again (the earlier one is kept as a variant, as in the window); /reset starts over; "
              "/exit or Ctrl+D quits.", file=sys.stderr)
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            print(file=sys.stderr)
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            session = new_session()
            print("(new conversation)", file=sys.stderr)
            continue
        if text == "/regenerate":
            try:
                events = session.regenerate()
                if interactive:
                    write("assistant> ")
                _print_reply(events, write, not args.quiet)
            except ChatError as exc:
                _print_err(str(exc))
            continue
        if interactive:
            write("assistant> ")
        _print_reply(session.turn(text), write, not args.quiet)
    return 0


# ----- serve ----------------------------------------------------------------------------
def cmd_serve(args, services: Services) -> int:
    """Run the local OpenAI-compatible API until Ctrl+C or SIGTERM (main thread)."""
    import signal

    from assistant.api.server import EXPOSE_FLAG, ApiServer, ApiServerConfig, ApiServerError, is_loopback
    from assistant.settings import api_token_path, load_or_create_api_token

    port = services.settings.api_server_port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise LibraryError(f"--port must be between 0 and 65535, not {port}.")
    config = ApiServerConfig(host=args.host, port=port, allow_non_loopback=args.expose)
    token = load_or_create_api_token(services.paths.data_dir, rotate=args.new_token)
    server = ApiServer(services, config, token=token)
    try:
        server.start()
    except ApiServerError as exc:
        _print_err(str(exc))
        return EXIT_USER_ERROR
    if not is_loopback(server.host):
        _print_err(f"warning: listening on {server.host} ({EXPOSE_FLAG}): anyone who can reach this address "
                   "and has the token can use your models.")
    print(f"OpenAI-compatible API at {server.url}")
    print(f"Token: {token}" if args.show_token else
          f"Token: in {api_token_path(services.paths.data_dir)} (print it with --show-token)")
    print("Models: " + ", ".join(m.id for m in services.library.list()))
    print("Ctrl+C stops.", flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    print("Stopped.", file=sys.stderr)
    return 0


# ----- parser ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistant", description="A private, local assistant for small language models.")
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="chat in the terminal (interactive, or one question)")
    chat.add_argument("question", nargs="*", help="ask one question and exit")
    chat.add_argument("--model", "-m", help="model id or name (default: the model chosen for chat)")
    chat.add_argument("--system", "-s", help="system prompt")
    chat.add_argument("--incognito", action="store_true",
                      help="keep this chat in memory only: never saved, not in history or search")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--top-p", dest="top_p", type=float)
    chat.add_argument("--top-k", dest="top_k", type=int)
    chat.add_argument("--min-p", dest="min_p", type=float)
    chat.add_argument("--repeat-penalty", dest="repeat_penalty", type=float)
    chat.add_argument("--seed", type=int)
    chat.add_argument("--max-tokens", dest="max_tokens", type=int)
    chat.add_argument("--stop", action="append", default=[], help="stop word (repeatable)")
    chat.add_argument("--quiet", "-q", action="store_true", help="no metrics line")
    chat.set_defaults(handler=cmd_chat)

    models = sub.add_parser("models", help="the model library")
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("list", help="list installed models")
    p.set_defaults(handler=cmd_models_list)
    p = msub.add_parser("add", help="import a GGUF model file")
    p.add_argument("path")
    p.set_defaults(handler=cmd_models_add)
    p = msub.add_parser("info", help="metadata and licence of a model")
    p.add_argument("name")
    p.add_argument("--licence", action="store_true", help="print the whole licence text")
    p.set_defaults(handler=cmd_models_info)
    p = msub.add_parser("remove", help="remove a model from the library")
    p.add_argument("name")
    p.add_argument("--delete-file", action="store_true", help="also delete the file from disk")
    p.add_argument("--yes", action="store_true", help="confirm deleting the file")
    p.set_defaults(handler=cmd_models_remove)
    p = msub.add_parser("discover", help="find GGUF models other tools keep (Ollama, LM Studio, GPT4All, Jan, "
                                         "Hugging Face and llama.cpp caches, your folders) and link them in place")
    p.add_argument("--link", nargs="+", metavar="NUMBER", help="link these listed models (or 'all'); never copies")
    p.add_argument("--add-folder", action="append", metavar="FOLDER", help="also search this folder, from now on")
    p.add_argument("-v", "--verbose", action="store_true", help="also say where else each model is listed")
    p.set_defaults(handler=cmd_models_discover)
    p = msub.add_parser("locate", help="point a model whose file is missing at its file again")
    p.add_argument("name")
    p.add_argument("path")
    p.set_defaults(handler=cmd_models_locate)
    p = msub.add_parser("prepare", help="join the default model pack's files (the app registers them when it opens)")
    p.set_defaults(handler=cmd_models_prepare, needs_services=False)
    p = msub.add_parser("route", help="choose the model for a task (or 'auto')")
    p.add_argument("task")
    p.add_argument("model")
    p.set_defaults(handler=cmd_models_route)
    add_model_settings_command(msub)

    serve = sub.add_parser("serve", help="local OpenAI-compatible API on 127.0.0.1, with a bearer token")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback unless you also "
                                                           "pass --i-understand-this-exposes-the-api)")
    serve.add_argument("--port", type=int, help="port (default: the one in Settings, 8642; 0 picks a free one)")
    serve.add_argument("--show-token", action="store_true", help="print the bearer token")
    serve.add_argument("--new-token", action="store_true", help="replace the token with a fresh one")
    serve.add_argument("--i-understand-this-exposes-the-api", dest="expose", action="store_true",
                       help="allow a --host other than loopback: other machines can then reach the API")
    serve.set_defaults(handler=cmd_serve)

    add_history_commands(sub)
    add_documents_commands(sub)
    add_task_commands(sub)
    add_study_commands(sub)
    add_train_commands(sub)
    add_vault_commands(sub)
    return parser


def _run_history(args) -> int:
    """History commands need only the store; `restore` must also work on a damaged one."""
    paths = default_paths().ensure()
    store = None
    try:
        unlocked = cli_unlock(paths)
    except StoreError as exc:
        _print_err(user_message(exc))
        return EXIT_USER_ERROR
    args.database_key = unlocked.key  # `restore` of a damaged file needs it without a store
    try:
        store = Store(paths.database, key=unlocked.key)
    except StoreError as exc:
        if getattr(args, "needs_store", True):
            _print_err(store_error_message(exc, paths.backups_dir))
            return EXIT_USER_ERROR
    try:
        return int(args.handler(args, store) or 0)
    except Exception as exc:
        return handle_error(exc, store.path if store is not None else None)
    finally:
        if store is not None:
            store.close()


def handle_error(exc: BaseException, database: Path | None = None) -> int:
    """The command line's one handler for a failed command: an error the user caused is one line
    on stderr and exit code 2; anything else is a bug, shown with its traceback (exit 1)."""
    if isinstance(exc, StoreError):
        _print_err(store_error_message(exc, default_paths().backups_dir))
        return EXIT_USER_ERROR
    if isinstance(exc, dbapi.OperationalError):  # locked, read-only: the file itself is fine
        _print_err(f"The database could not be used: {exc}.")
        return EXIT_USER_ERROR
    if isinstance(exc, dbapi.DatabaseError):
        path = database or default_paths().database
        _print_err(store_error_message(CorruptDatabaseError(f"The database {path} cannot be read ({exc}).", path),
                                       default_paths().backups_dir))
        return EXIT_USER_ERROR
    if is_expected(exc):
        _print_err(user_message(exc))
        return EXIT_USER_ERROR
    raise exc


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "history":
        return _run_history(args)
    if args.command == "vault":
        try:
            return run_vault_command(args, default_paths().ensure())
        except Exception as exc:
            return handle_error(exc)
    if not getattr(args, "needs_services", True):
        try:
            return int(args.handler(args, None) or 0)
        except Exception as exc:
            return handle_error(exc)
    services = None
    try:
        services = build_services(unlocked=cli_unlock(default_paths().ensure()))
        return int(args.handler(args, services) or 0)
    except BrokenPipeError:
        # The reader went away (`assistant models list | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not complain again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        return handle_error(exc)
    except KeyboardInterrupt:
        return 130
    finally:
        if services is not None:
            services.close()


if __name__ == "__main__":
    raise SystemExit(main())
