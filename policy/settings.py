"""Typed settings from the command line: `--set section.field=value`, for the app and the trainer."""
import dataclasses


def apply_overrides(cfg, assignments: list[str]):
    """`section.field=value` strings from the command line, parsed as the field's own type."""
    for assignment in assignments:
        path, _, raw = assignment.partition("=")
        *parents, name = path.split(".")
        target = cfg
        for parent in parents:
            target = getattr(target, parent)
        if not dataclasses.is_dataclass(target) or name not in {f.name for f in dataclasses.fields(target)}:
            raise ValueError(f"unknown setting {path!r}")
        current = getattr(target, name)
        value = raw.lower() in ("1", "true", "yes") if isinstance(current, bool) else \
            type(current)(raw) if current is not None else raw
        setattr(target, name, value)
    return cfg
