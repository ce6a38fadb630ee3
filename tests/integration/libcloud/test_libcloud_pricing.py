"""``cloudherd catalog refresh`` of a libcloud entry (libcloud's in-memory Dummy driver, whose sizes carry prices)
and of ``local`` (free): what the command line says and the book ``price_book`` then has."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from helpers import cli, write_spec
from libcloud.compute.drivers.dummy import DummyNodeDriver

from cloudherd.providers.prices import price_book, refreshed_path

TODAY = date.today().isoformat()


def test_refresh_takes_the_drivers_size_prices_in_the_entrys_location(home: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s", "name: priced\nproviders:\n  toy: {type: libcloud, driver: dummy, key: 0, "
                                      "location: London Loft}\ngroups:\n  web: {provider: toy, count: 1}\n")
    listed = {str(s.name): float(s.price) for s in DummyNodeDriver(0).list_sizes()}  # libcloud's own data

    result = cli("catalog", "refresh", "toy", "--spec", str(spec))

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (f"libcloud prices of {TODAY}: {len(listed)} prices (0 with spot) in "
                                             f"1 region: London Loft ({len(listed)})")
    assert f"kept in {refreshed_path('libcloud')}" in result.stdout
    book = price_book("libcloud")
    assert book is not None and book.taken == date.today() and "dummy" in book.source
    assert {size: p.hourly for size, p in book.regions["London Loft"].items()} == listed
    assert book.price("London Loft", "Big").spot is None  # type: ignore[union-attr]  # libcloud publishes none

    shown = cli("catalog", "prices", "toy", "--spec", str(spec), "--size", "big")
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()[2:]]
    assert [row[-4] for row in rows[1:]] == ["Big", "Big"] and [row[-3] for row in rows[1:]] == [
        f"{listed['Big']:.4f}", f"{listed['XXL Big']:.4f}"]


def test_local_is_free_and_a_cloud_without_a_book_says_how_to_make_one(home: Path) -> None:
    refreshed = cli("catalog", "refresh", "local")
    assert refreshed.returncode == 0 and refreshed.stdout.strip() == "local: free: nothing to refresh"
    assert not refreshed_path("local").exists()
    shown = cli("catalog", "prices", "local")
    assert shown.returncode == 0 and shown.stdout.strip() == "local: free"

    none = cli("catalog", "prices", "libcloud")
    assert none.returncode == 2 and none.stderr.strip() == (
        "error: no price book for libcloud yet: `cloudherd catalog refresh ENTRY --spec FILE` makes one")
    no_driver = cli("catalog", "refresh", "libcloud")
    assert no_driver.returncode == 2 and no_driver.stderr.strip() == (
        "error: a libcloud provider is a spec's entry (its driver and settings): "
        "`cloudherd catalog refresh ENTRY --spec FILE`")
