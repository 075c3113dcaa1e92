"""hooks.patch: the one undo mechanism (a Patch handle, and set_attr)."""
from __future__ import annotations

import pytest

from hooks.patch import Patch, set_attr


class Base:
    def greet(self):
        return "base"


class Child(Base):
    pass


class Tracked:
    """Like a Keras layer: a custom __setattr__ that must not see the patch."""

    def __init__(self):
        object.__setattr__(self, "seen", [])
        self.value = 1

    def __setattr__(self, name, value):
        self.seen.append(name)
        object.__setattr__(self, name, value)


def test_remove_is_idempotent():
    calls = []
    patch = Patch(lambda: calls.append(1))
    assert not patch.removed
    patch.remove()
    patch.remove()
    assert calls == [1] and patch.removed


def test_context_manager_removes_on_exit():
    calls = []
    with Patch(lambda: calls.append("undone")) as patch:
        assert calls == []
    assert calls == ["undone"] and patch.removed


def test_everything_is_restored_when_the_block_raises():
    obj = Tracked()
    with pytest.raises(ZeroDivisionError):
        with Patch() as patch:
            patch.add(set_attr(obj, "value", 2))
            patch.add(set_attr(Child, "greet", lambda self: "patched"))
            assert obj.value == 2 and Child().greet() == "patched"
            1 / 0
    assert obj.value == 1 and Child().greet() == "base" and "greet" not in Child.__dict__


def test_a_missing_attribute_is_deleted_again():
    obj = Tracked()
    patch = set_attr(obj, "extra", 5)
    assert obj.extra == 5
    patch.remove()
    assert not hasattr(obj, "extra")
    # class level: an inherited method is shadowed, then inherited again
    patch = set_attr(Child, "greet", lambda self: "child")
    assert "greet" in Child.__dict__ and Child().greet() == "child"
    patch.remove()
    assert "greet" not in Child.__dict__ and Child().greet() == "base"


def test_an_existing_attribute_gets_its_old_value_back():
    original = Base.__dict__["greet"]
    with set_attr(Base, "greet", lambda self: "other"):
        assert Base().greet() == "other"
    assert Base.__dict__["greet"] is original


def test_instance_patches_bypass_a_custom_setattr():
    obj = Tracked()
    obj.seen.clear()
    with set_attr(obj, "value", 3):
        assert obj.value == 3
    assert obj.value == 1 and obj.seen == []


def test_members_are_removed_newest_first():
    order = []
    group = Patch(lambda: order.append("own"))
    group.add(lambda: order.append("first"))
    group.add(Patch(lambda: order.append("second")))
    group.remove()
    assert order == ["second", "first", "own"]


def test_a_failing_undo_does_not_stop_the_others():
    done = []

    def fail():
        raise RuntimeError("cannot")

    group = Patch()
    group.add(lambda: done.append("a"))
    group.add(fail)
    group.add(lambda: done.append("c"))
    with pytest.raises(RuntimeError, match="cannot"):
        group.remove()
    assert done == ["c", "a"]
    errors = []
    group = Patch()
    group.add(fail)
    group.add(lambda: done.append("d"))
    group.remove(on_error=errors.append)
    assert done[-1] == "d" and [str(e) for e in errors] == ["cannot"]


def test_only_if_current_leaves_a_later_change_alone():
    patch = set_attr(Child, "greet", lambda self: "mine", only_if_current=True)
    theirs = Child.greet = lambda self: "theirs"
    patch.remove()
    assert Child.__dict__["greet"] is theirs
    del Child.greet


def test_adding_to_a_removed_group_removes_at_once():
    group = Patch()
    group.remove()
    calls = []
    member = group.add(lambda: calls.append(1))
    assert calls == [1] and member.removed
