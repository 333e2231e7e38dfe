"""Charts for the app, drawn by Vega-Lite (Altair) in gr.Plot.

Gradio's own LinePlot draws lines only, so a figure from one round (one point) showed nothing,
and its bar plots labelled a lone count `23.000000`. Here every line carries a point at each
value, counts are whole numbers on a zero-based axis, rounds and days are categories, and a
chart with no data says what it is waiting for instead of drawing empty axes.
"""
import math

import altair as alt
import pandas as pd

HEIGHT = 220
WHOLE = alt.Axis(format="d", tickMinStep=1)  # steps: no 23.000000
FIGURE = alt.Axis(format="~g")  # 1.5, not 1.500000


def _frame(chart: alt.Chart, title: str) -> alt.Chart:
    return chart.properties(title=title, width="container", height=HEIGHT)


def waiting(title: str, message: str) -> alt.Chart:
    """An empty chart that says why it is empty."""
    text = alt.Chart(pd.DataFrame({"message": [message]})).mark_text(size=13, color="gray")
    return _frame(text.encode(text="message:N"), title)


def lines(frame: pd.DataFrame, x: str, y: str, title: str, *, color: str | None = None,
          x_title: str | None = None, y_title: str | None = None, x_whole: bool = True,
          y_domain: tuple[float, float] | None = None, empty: str = "nothing yet") -> alt.Chart:
    """Lines with a point on every value, so a single value shows. `x_whole` draws x as whole
    numbers on a continuous axis (steps); rounds are better as `x_whole=False` categories."""
    if frame.empty:
        return waiting(title, empty)
    x_enc = (alt.X(f"{x}:Q", title=x_title or x, axis=WHOLE, scale=alt.Scale(zero=False, nice=False, padding=12))
             if x_whole else alt.X(f"{x}:O", title=x_title or x, axis=alt.Axis(labelAngle=0)))
    y_enc = alt.Y(f"{y}:Q", title=y_title or y, axis=FIGURE,
                  scale=alt.Scale(domain=list(y_domain)) if y_domain else alt.Scale(zero=True))
    encoding = {"x": x_enc, "y": y_enc, "tooltip": [c for c in (x, color, y) if c]}
    if color:  # a legend only where there is more than one line to tell apart
        legend = alt.Legend(orient="bottom", columns=1) if frame[color].nunique() > 1 else None
        encoding["color"] = alt.Color(f"{color}:N", title=None, legend=legend)
    chart = alt.Chart(frame).mark_line(point=alt.OverlayMarkDef(size=60, filled=True)).encode(**encoding)
    return _frame(chart, title)


def counts_axis(top: int) -> tuple[alt.Axis, alt.Scale]:
    """Ticks at whole numbers only, at most six of them, from 0 to just above `top`."""
    step = max(1, math.ceil(top / 5))
    ticks = list(range(0, int(top) + step, step))
    return alt.Axis(values=ticks, format="d"), alt.Scale(domain=[0, ticks[-1] + step / 2])  # room for labels


def bars(frame: pd.DataFrame, x: str, y: str, title: str, *, x_title: str | None = None,
         y_title: str | None = None, shares: bool = False, empty: str = "nothing yet") -> alt.Chart:
    """Whole-number counts (or, with `shares`, shares from 0 to 1) per category, each bar
    labelled with its value."""
    if frame.empty or (not shares and not frame[y].any()):
        return waiting(title, empty)
    y_axis, scale = (alt.Axis(format=".0%"), alt.Scale(domain=[0, 1])) if shares else counts_axis(frame[y].max())
    base = alt.Chart(frame).encode(
        x=alt.X(f"{x}:O", title=x_title or x, sort=None, axis=alt.Axis(labelAngle=0, labelLimit=120)),
        y=alt.Y(f"{y}:Q", title=y_title or y, axis=y_axis, scale=scale), tooltip=[x, y])
    label = base.mark_text(dy=-7).encode(text=alt.Text(f"{y}:Q", format=".0%" if shares else "d"))
    return _frame(base.mark_bar() + label, title)
