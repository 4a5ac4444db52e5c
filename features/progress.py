"""What an extraction run shows on stderr while it works. On a terminal: a bar over the videos and, below it,
one over the snippets of the video under way, with its rate and the time left. Elsewhere (a log file, a pipe):
plain lines without carriage returns, one when a video ends and one every `every` seconds inside a video."""
import os
import sys
import time

from tqdm import tqdm


def is_terminal(stream):
    """Whether `stream` is a terminal that can show bars: one with a width (a pseudo-terminal of width 0, as
    some job runners give, would show empty bars)."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError):
        return False


def expected_snippets(duration, fps, snippet=16):
    """How many snippets a video of `duration` seconds (None: unknown) should give at `fps`."""
    return None if duration is None else int(duration * fps + 0.5) // snippet


class Progress:
    """start(vid) when a video begins, snippets(total, done) once its length is known (`total` snippets
    expected, None when unknown; `done` of them saved by an earlier run), snippet() after each snippet,
    end(outcome) when it is saved or failed, close() at the end of the run."""

    def __init__(self, videos, enabled=True, stream=None, every=60.0):
        self.stream = sys.stderr if stream is None else stream
        self.enabled, self.videos, self.every = enabled, videos, every
        self.tty = enabled and is_terminal(self.stream)
        self.bar = (tqdm(total=videos, unit="video", file=self.stream, dynamic_ncols=True, position=0)
                    if self.tty else None)
        self.inner, self.index = None, 0

    def start(self, vid):
        self.index += 1
        self.vid, self.total, self.done, self.computed = vid, None, 0, 0
        self.began = self.shown = time.time()
        if self.tty:
            self.bar.set_description(vid)

    def snippets(self, total, done):
        self.total, self.done = total, done
        if self.tty:
            self.inner = tqdm(total=total, initial=done, desc="snippets", unit="snippet", file=self.stream, dynamic_ncols=True,
                              position=1, leave=False)

    def snippet(self):
        self.done += 1
        self.computed += 1
        if self.inner is not None:
            self.inner.update()
        elif self.enabled and time.time() - self.shown >= self.every:
            self.shown = time.time()
            self._line(self._status())

    def end(self, outcome):
        if self.tty:
            if self.inner is not None:
                self.inner.close()
                self.inner = None
            self.bar.update()
        elif self.enabled:
            self._line(f"{outcome}, {self.done} snippets ({tqdm.format_interval(time.time() - self.began)})")

    def close(self):
        if self.inner is not None:
            self.inner.close()
        if self.bar is not None:
            self.bar.close()

    def _status(self):
        """'12/45 snippets, 0.80 snippets/s, about 00:41 left' (the rate of the snippets computed this run)."""
        rate = self.computed / max(time.time() - self.began, 1e-9)
        text = f"{self.done}/{self.total if self.total is not None else '?'} snippets, {rate:.2f} snippets/s"
        if self.total is not None and self.total > self.done:
            text += f", about {tqdm.format_interval((self.total - self.done) / rate)} left"
        return text

    def _line(self, text):
        print(f"[{self.index}/{self.videos}] {self.vid}: {text}", file=self.stream, flush=True)
