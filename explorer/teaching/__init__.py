"""The Learn page's lessons: theory drawn over a live measurement (no Streamlit here).

One module per lesson (``power``, ``lanczos``, ``ghosts``, ``lobpcg``, ``randomized``,
``dense``, ``chebyshev``), each defining one :class:`~explorer.teaching.lesson.Lesson`; ``lesson`` holds
what a lesson is (text, parameters, runs, charts) and the helpers they share. ``LESSONS``
is the order of the Learn page's menu. Adding a lesson: one module plus one entry here.
"""

from explorer.teaching.lesson import LESSON_RUNS, Chart, Lesson, LessonSetup, Series, run_lesson, staircase_points
from explorer.teaching.power import POWER
from explorer.teaching.lanczos import LANCZOS
from explorer.teaching.ghosts import GHOSTS
from explorer.teaching.lobpcg import LOBPCG
from explorer.teaching.randomized import RSVD
from explorer.teaching.dense import DENSE
from explorer.teaching.chebyshev import CHEBYSHEV

LESSONS: dict[str, Lesson] = {lesson.key: lesson for lesson in (POWER, LANCZOS, GHOSTS, LOBPCG, RSVD, DENSE, CHEBYSHEV)}


def get_lesson(key: str) -> Lesson:
    """The lesson ``key`` (ValueError naming the choices otherwise)."""
    try:
        return LESSONS[key]
    except KeyError:
        raise ValueError(f"unknown lesson {key!r}; choose one of {list(LESSONS)}") from None


__all__ = ["LESSONS", "LESSON_RUNS", "Chart", "Lesson", "LessonSetup", "Series", "get_lesson", "run_lesson",
           "staircase_points"]
