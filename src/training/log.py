"""The training log as CSV: ``output_path/train_log.csv``, drawn by ``python -m tools.plot_log``.

One row per model-zoo loss line (``epoch, step, global_step, loss, lr, step_time_ms``) and one per
evaluation during training (``epoch, step, global_step, map``); the other fields of a row are empty.
``step_time_ms`` is the mean time of the steps since the previous row of the epoch.

Resuming keeps the log consistent: a run that starts after epoch E keeps the rows of epochs 1..E and
drops the later ones (a killed run's epochs after its last checkpoint are trained and logged again),
as well as a line cut short by a kill. The kept rows are rewritten to a temporary file that replaces
the log in one rename; each new row is then appended with one write and flushed to disk.
"""
import csv
import io
import os
import time

FILE_NAME = "train_log.csv"
COLUMNS = ("epoch", "step", "global_step", "loss", "lr", "step_time_ms", "map")


def log_path(cfg):
    """Where a run's CSV goes."""
    return os.path.join(cfg.output_path, FILE_NAME)


def valid_row(row):
    """True for a complete row: every column present and epoch, step, global_step whole numbers."""
    if len(row) != len(COLUMNS):
        return False
    try:
        int(row[0]), int(row[1]), int(row[2])
        [float(value) for value in row[3:] if value]
    except ValueError:
        return False
    return True


def read_rows(path):
    """The complete rows of a log, as lists of strings (header and torn or foreign lines left out)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as stream:
        text = stream.read()
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(rows[0]) != COLUMNS:
        return []
    return [row for row in rows[1:] if valid_row(row)]


def csv_line(values):
    """One CSV line."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def number(value, digits=6):
    """A float as short text (``%.6g``), or empty for None."""
    return "" if value is None else "%.*g" % (digits, float(value))


class TrainingLog:
    """Appends the rows of one run; ``path=None`` makes a log that writes nothing (ranks other than 0)."""

    def __init__(self, path, start_epoch, steps_per_epoch, learning_rates):
        """Open the log of a run starting after ``start_epoch``; ``learning_rates`` has one rate per step."""
        self.path = path
        self.steps_per_epoch = int(steps_per_epoch)
        self.learning_rates = learning_rates
        self.clock, self.last_step = time.perf_counter(), 0
        if path:
            self.restart(int(start_epoch))

    def restart(self, start_epoch):
        """Keep the rows of epochs up to ``start_epoch``, atomically; start a new log when there is none."""
        kept = [row for row in read_rows(self.path) if int(row[0]) <= start_epoch]
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, ".%s.%d.tmp" % (FILE_NAME, os.getpid()))
        with open(tmp, "w", newline="", encoding="utf-8") as stream:
            stream.write(csv_line(COLUMNS) + "".join(csv_line(row) for row in kept))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, self.path)

    def append(self, values):
        """Write one row with a single write call, flushed to disk."""
        if not self.path:
            return
        with open(self.path, "a", newline="", encoding="utf-8") as stream:
            stream.write(csv_line(values))
            stream.flush()
            os.fsync(stream.fileno())

    def begin_epoch(self):
        """Start timing the steps of an epoch."""
        self.clock, self.last_step = time.perf_counter(), 0

    def step(self, epoch, step, loss):
        """The row of a loss line: step ``step`` (1-based) of ``epoch``."""
        now = time.perf_counter()
        step_time = (now - self.clock) * 1000.0 / max(1, step - self.last_step)
        self.clock, self.last_step = now, step
        global_step = (epoch - 1) * self.steps_per_epoch + step
        rate = self.learning_rates[min(global_step, len(self.learning_rates)) - 1] if len(self.learning_rates) else None
        self.append([epoch, step, global_step, number(loss), number(rate), number(step_time, 5), ""])

    def evaluation(self, epoch, mean_ap):
        """The row of an evaluation after ``epoch``."""
        self.append([epoch, self.steps_per_epoch, epoch * self.steps_per_epoch, "", "", "", number(mean_ap)])
