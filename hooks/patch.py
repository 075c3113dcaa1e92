"""One undo mechanism for every change a hook makes to a framework: the :class:`Patch`.

Why: tracing works by patching - ``Tensor.backward``, the DataLoader iterator, Keras's
``train_function``, ``Model.fit`` - and each patch must come off exactly once, in
reverse order, whatever happens in between (the user's loop raising included), or the
user's process is left changed. A :class:`Patch` is that promise as an object, modelled
on torch's ``torch.utils.hooks.RemovableHandle``: :meth:`Patch.remove` is idempotent,
and a patch is a context manager that removes itself on exit, on errors too. A patch
may hold other patches (:meth:`Patch.add`), removed newest first.

:func:`set_attr` is the common patch: set an attribute on an object or a class and
remember what was there - the old value, or that there was none (then undo deletes it,
so a class attribute inherited from a base is not frozen into the subclass).
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["Patch", "set_attr"]

_MISSING = object()


class Patch:
    """A handle that undoes a change: ``remove()`` (idempotent), or use it as a context manager.

    ``Patch(undo)`` wraps one undo function; ``Patch()`` starts an empty group that
    :meth:`add` fills. Removing a group removes its members newest first and goes on
    past a member that fails, so everything that can be restored is.
    """

    __slots__ = ("_undo", "_members", "_removed")

    def __init__(self, undo: Callable[[], object] | None = None) -> None:
        self._undo = undo
        self._members: list[Patch] = []
        self._removed = False

    @property
    def removed(self) -> bool:
        """Whether :meth:`remove` has run (a removed patch cannot be applied again)."""
        return self._removed

    def add(self, patch: "Patch | Callable[[], object]") -> "Patch":
        """Make ``patch`` (or an undo function) part of this group; returns it as a Patch.

        Adding to a group that was already removed removes ``patch`` at once: nothing
        may stay applied after its owner has been undone.
        """
        member = patch if isinstance(patch, Patch) else Patch(patch)
        if self._removed:
            member.remove()
        else:
            self._members.append(member)
        return member

    def remove(self, on_error: Callable[[BaseException], None] | None = None) -> None:
        """Undo the change (members newest first, then this patch's own undo); idempotent.

        An undo that raises does not stop the others: with ``on_error`` each error is
        passed to it; without, the first error is raised after everything else ran.
        """
        if self._removed:
            return
        self._removed = True
        first: BaseException | None = None
        members, self._members = self._members, []
        undos = [m.remove for m in reversed(members)]
        if self._undo is not None:
            undos.append(self._undo)
        for undo in undos:
            try:
                undo()
            except Exception as exc:  # keep restoring: one failed undo must not leave the rest applied
                if on_error is not None:
                    on_error(exc)
                elif first is None:
                    first = exc
        if first is not None:
            raise first

    def __enter__(self) -> "Patch":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        self.remove()
        return False

    def __repr__(self) -> str:
        state = "removed" if self._removed else f"{len(self._members)} members" if self._members else "applied"
        return f"<Patch {state}>"


def set_attr(obj: Any, name: str, value: Any, *, only_if_current: bool = False) -> Patch:
    """Set ``obj.<name> = value`` and return the :class:`Patch` that undoes it.

    ``obj`` may be an instance (the attribute goes into the instance's ``__dict__``,
    bypassing any custom ``__setattr__`` such as Keras's attribute tracking) or a class
    (set on the class itself). Undo puts the old value back, or deletes the attribute
    if the object had none of its own. ``only_if_current``: undo only while the
    attribute is still ``value`` (someone who replaced it since keeps their change).
    """
    is_class = isinstance(obj, type)
    old = obj.__dict__.get(name, _MISSING)
    setter: Callable[[Any, str, Any], None] = setattr if is_class else object.__setattr__
    deleter: Callable[[Any, str], None] = delattr if is_class else object.__delattr__
    setter(obj, name, value)

    def undo() -> None:
        if only_if_current and obj.__dict__.get(name, _MISSING) is not value:
            return
        if old is not _MISSING:
            setter(obj, name, old)
            return
        try:
            deleter(obj, name)
        except AttributeError:      # already gone
            pass

    return Patch(undo)
