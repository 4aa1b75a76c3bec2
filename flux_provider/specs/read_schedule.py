"""A spec's timing and error handling: schedule, calendar, deadline, throttle and rules."""

from __future__ import annotations

import re

from flux_provider.calendars import DAYS, Calendar, Window
from flux_provider.identifiers import dag_id_for
from flux_provider.rules import ELEMENTS, Action, Match, Rule
from flux_provider.specs.model import (
    Deadline,
    Schedule,
    Throttle,
)
from flux_provider.specs.spec_reader import SpecReader, typed_value
from flux_provider.specs.spec_xml import parse_xml


class ScheduleSections(SpecReader):
    """Reads ``<schedule>``, ``<calendar>``, ``<deadline>``, ``<throttle>`` and ``<rules>``."""

    def schedule(self) -> Schedule:
        from croniter import croniter

        el = self.find("schedule")
        cron_el, preset_el = self.find("cron", el), self.find("preset", el)
        after = tuple(a.text.strip() for a in el.iter("after"))
        cron = None
        if cron_el is not None:
            cron = (cron_el.text or "").strip()
            if not croniter.is_valid(cron):
                raise self.error(
                    cron_el,
                    f"{cron!r} is not a cron expression",
                    fix="five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *'",
                )
        elif preset_el is not None and preset_el.text.strip() != "none":
            cron = preset_el.text.strip()
        if self.name in after:
            raise self.error(el, f"the data set waits for itself ({self.name!r})", fix="remove that <after>")
        tz = self.time_zone(el, el.get("timezone", "UTC"))
        return Schedule(
            cron=cron,
            after=after,
            start=el.get("start", "2026-01-01"),
            catchup=self.flag(el, "catchup"),
            timezone=tz,
            max_active_runs=self.number(el, "maxActiveRuns", default=1),
            grain=el.get("grain"),
            require=el.get("require", "partition"),
            priority=self.number(el, "priority", default=0),
        )

    def time_zone(self, el, tz: str) -> str:
        """``tz`` if it is an IANA time zone, else a spec error on ``el``'s ``timezone``."""
        try:
            import pendulum

            pendulum.timezone(tz)
        except Exception:
            raise self.error(
                el, f"{tz!r} is not a time zone", attribute="timezone", fix="an IANA name like UTC or Europe/Paris"
            ) from None
        return tz

    def calendar(self) -> Calendar | None:
        """The spec's <calendar>, or the shared calendar file it names (``file=``, relative to the spec)."""
        el = self.find("calendar")
        if el is None:
            return None
        source = el
        if el.get("file"):
            path = self.named_file(el, el.get("file"), "calendar file")
            source = parse_xml(path).getroot()
            if source.tag != "calendar" or len(el):
                raise self.error(
                    el,
                    f"{path.name} must hold one <calendar> and the spec's <calendar file=> nothing else",
                    fix='<calendar timezone="..."><window .../></calendar> in the file',
                )
        zone = self.time_zone(el, el.get("timezone") or source.get("timezone") or "UTC")
        windows = []
        for window in source.iter("window"):
            for attribute in ("start", "end"):
                self.clock(window, attribute)
            days = tuple(self.weekday(window, d) for d in (window.get("days") or "").replace(",", " ").split())
            if window.get("date") and days:
                raise self.error(window, "a window has days= or date=, not both", fix="two windows")
            windows.append(
                Window(
                    start=window.get("start"),
                    end=window.get("end"),
                    days=days,
                    date=window.get("date"),
                    reason=window.get("reason") or "",
                )
            )
        holidays = tuple(h.get("date") for h in source.iter("holiday"))
        return Calendar(timezone=zone, holidays=holidays, windows=tuple(windows))

    def clock(self, el, attribute: str) -> str:
        value = el.get(attribute) or ""
        hour, _, minute = value.partition(":")
        if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60 and len(minute) == 2):
            raise self.error(el, f"{value!r} is not a time of day", attribute=attribute, fix="HH:MM, e.g. 06:00")
        return value

    def weekday(self, el, name: str) -> int:
        if name.lower()[:3] not in DAYS:
            raise self.error(el, f"{name!r} is not a day of the week", attribute="days", fix="mon tue ... sun")
        return DAYS.index(name.lower()[:3])

    def deadline(self) -> Deadline | None:
        el = self.find("deadline")
        if el is None:
            return None
        finish_by, within = el.get("finishBy"), el.get("withinMinutes")
        if (finish_by is None) == (within is None):
            raise self.error(
                el,
                "give either finishBy= or withinMinutes=",
                fix='<deadline finishBy="06:00" timezone="Europe/Amsterdam"/> or <deadline withinMinutes="90"/>',
            )
        if finish_by is not None:
            self.clock(el, "finishBy")
        tz = self.time_zone(el, el.get("timezone") or self.find("schedule").get("timezone", "UTC"))
        minutes = float(within) if within is not None else None
        if minutes is not None and minutes <= 0:
            raise self.error(el, "withinMinutes must be more than 0", attribute="withinMinutes")
        return Deadline(finish_by=finish_by, within_minutes=minutes, timezone=tz)

    def throttle(self) -> Throttle:
        el = self.find("throttle")
        default_pool = dag_id_for(self.name)
        connection = self.find("source").get("connection") or "mssql_default"
        if el is None:
            return Throttle(pool=default_pool, source=connection, connection=connection)
        pool = el.get("pool") or default_pool
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,256}", pool):
            raise self.error(el, f"{pool!r} is not a pool name", attribute="pool", fix="letters, digits, _ . -")
        source = el.get("source") or connection
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,250}", source):
            raise self.error(el, f"{source!r} is not a source name", attribute="source", fix="letters, digits, _ . -")
        weight = self.number(el, "weight", kind=float, default=1.0)
        if not 0 < weight <= 1000:
            raise self.error(el, f"weight {weight:g} is not in (0, 1000]", attribute="weight", fix="a positive share")
        low, initial, high = (self.number(el, a, default=d) for a, d in (("min", 1), ("initial", 2), ("max", 8)))
        if not low <= initial <= high:
            raise self.error(
                el,
                f"the bounds do not hold: min={low} <= initial={initial} <= max={high}",
                fix="choose min <= initial <= max",
            )
        floor = self.number(el, "floor", default=0)
        if floor > high:
            raise self.error(el, f"floor={floor} is above max={high}", attribute="floor", fix="choose floor <= max")
        classes = tuple(el.get("loadClasses").split()) if el.get("loadClasses") else None
        algorithm = el.get("algorithm") or Throttle.algorithm
        return Throttle(
            pool=pool,
            initial=initial,
            min=low,
            max=high,
            load_classes=classes,
            algorithm=algorithm,
            source=source,
            connection=connection,
            weight=weight,
            floor=floor,
        )

    def action(self, element) -> Action:
        """The typed action of ``<retry count= .../>``, ``<throttleDown factor=/>``, ``<skip reason=/>``, ..."""
        kind, fields = ELEMENTS[element.tag]
        return kind(**{fields[name]: typed_value(value) for name, value in element.attrib.items()})

    def rules(self) -> tuple[Rule, ...]:
        el = self.find("recovery")
        if el is None:
            return ()
        rules = []
        for rule in el.iter("rule"):
            match_el = self.find("match", rule)
            message = match_el.get("message")
            if message is not None:
                try:
                    re.compile(message)
                except re.error as exc:
                    raise self.error(
                        match_el,
                        f"message {message!r} is not a regular expression: {exc}",
                        attribute="message",
                        fix="escape special characters with \\",
                    ) from None
            match = Match(
                error_class=match_el.get("class"),
                number=self.number(match_el, "number"),
                exit_code=self.number(match_el, "exitCode"),
                message=message,
                step=match_el.get("step"),
                exception=match_el.get("exception"),
            )
            actions = [self.action(action) for action in rule if action.tag != "match"]
            kinds = [a.kind for a in actions]
            if "retry" in kinds and ("fail" in kinds or "skip" in kinds):
                raise self.error(
                    rule,
                    f"actions {kinds} contradict each other (retry with fail/skip)",
                    fix="retry, or fail/skip, optionally with alert and throttleDown",
                )
            if len(set(kinds)) != len(kinds):
                raise self.error(rule, f"an action appears twice in {kinds}", fix="list each action once")
            rules.append(Rule(match=match, actions=tuple(actions), name=rule.get("name"), line=rule.sourceline))
        return tuple(rules)
