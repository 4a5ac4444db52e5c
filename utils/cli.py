"""The command-line face of every entry point: a user's mistake is one line on stderr and exit 2, never a
traceback; an interrupt is one line and exit 130."""
import sys

BAD_INPUT = (FileNotFoundError, ValueError)       # the message names the file or flag and the problem


def error_line(err):
    """The message of ``err`` on one line. An error raised in a DataLoader worker (a feature file read with
    --feature_cache mmap) arrives with the worker's traceback in its message; its last line is the original
    error."""
    message = str(err).strip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return message


def run(main, argv=None, interrupted="interrupted (Ctrl-C)"):
    """main(argv) for the command line, returning what it returns (an entry point whose main returns an
    exit status calls ``sys.exit(run(main))``). Bad input exits 2 and any other OSError (a full disk, a
    folder without write permission) exits 1, each with one line ``error: ...``; Ctrl-C prints
    ``error: <interrupted>`` (or the interrupt's own message, when it carries one: how far a run got) and exits
    130."""
    try:
        return main(argv)
    except BAD_INPUT as err:
        print(f"error: {error_line(err)}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        print(f"error: {error_line(err)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as err:
        print(f"error: {str(err) or interrupted}", file=sys.stderr)
        sys.exit(130)
