"""Strict MovieLens parsers on small synthetic files in both layouts (ML-100K tab/pipe, ML-1M ::).

Every validation error must name the file and the line, so a user can open the file there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.data.synthetic import (
    GENRES_100K,
    MOVIES,
    TIMESTAMP,
    item_line_100k,
    rating_lines,
    user_line,
    write_lines,
)
from training.data.parsers import (
    DataValidationError,
    Ratings,
    check_against_catalogue,
    read_genres_100k,
    read_movies_1m,
    read_movies_100k,
    read_ratings,
    read_user_ids,
)

SEPARATORS = {"ml-100k": "\t", "ml-1m": "::"}
GOOD_LINES = ((1, 10, 4), (2, 20, 5))
DAMAGED_TITLE = "Mis\ufffdrables, Les (1995)"  # how broken copies of u.item / movies.dat look


def assert_names(exc: pytest.ExceptionInfo, path: Path, line: int | None) -> str:
    """The error points at ``path:line`` (or at the file when no line applies)."""
    err = exc.value
    assert err.path == path
    assert err.line == line
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(err).startswith(where), str(err)
    return err.message


# --- ratings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", sorted(SEPARATORS))
def test_ratings_values_dtypes_and_line_numbers(tmp_path, dataset):
    sep = SEPARATORS[dataset]
    lines = rating_lines([(196, 242, 3), (186, 302, 1)], sep)
    path = write_lines(tmp_path / "ratings", [lines[0], "", lines[1]])  # a blank line is skipped
    ratings = read_ratings(path, sep)
    assert isinstance(ratings, Ratings)
    assert len(ratings) == 2
    assert ratings.users.tolist() == [196, 186]
    assert ratings.items.tolist() == [242, 302]
    assert ratings.ratings.tolist() == [3.0, 1.0]
    assert ratings.timestamps.tolist() == [TIMESTAMP, TIMESTAMP + 1]
    assert ratings.lines.tolist() == [1, 3]  # numbers are lines of the file, blanks counted
    assert ratings.users.dtype == np.int64 and ratings.items.dtype == np.int64
    assert ratings.ratings.dtype == np.float32


def test_ratings_accept_crlf_line_endings(tmp_path):
    path = tmp_path / "u.data"
    path.write_bytes(b"1\t2\t3\t881250949\r\n4\t5\t1\t881250950\r\n")
    ratings = read_ratings(path, "\t")
    assert ratings.users.tolist() == [1, 4]
    assert ratings.timestamps.tolist() == [881250949, 881250950]


BAD_RATING_FIELDS = [
    pytest.param(["3", "10", "4"], "expected 4 columns", id="too-few-columns"),
    pytest.param(["3", "10", "4", "881250949", "x"], "expected 4 columns", id="too-many-columns"),
    pytest.param(["abc", "10", "4", "881250949"], "user id 'abc' is not an integer", id="user-id"),
    pytest.param(["3", "1.5", "4", "881250949"], "item id '1.5' is not an integer", id="item-id"),
    pytest.param(["3", "10", "4.5", "881250949"], "rating '4.5' is not an integer", id="rating"),
    pytest.param(["3", "10", "4", "yesterday"], "timestamp 'yesterday'", id="timestamp"),
    pytest.param(["3", "10", "0", "881250949"], "rating 0 is outside 1-5", id="rating-0"),
    pytest.param(["3", "10", "6", "881250949"], "rating 6 is outside 1-5", id="rating-6"),
    pytest.param(["3", "10", "-1", "881250949"], "rating -1 is outside 1-5", id="rating-neg"),
    pytest.param(["0", "10", "4", "881250949"], "ids must be positive", id="user-0"),
    pytest.param(["3", "-7", "4", "881250949"], "ids must be positive", id="item-neg"),
]


@pytest.mark.parametrize("dataset", sorted(SEPARATORS))
@pytest.mark.parametrize(("fields", "expected"), BAD_RATING_FIELDS)
def test_ratings_errors_name_file_and_line(tmp_path, dataset, fields, expected):
    sep = SEPARATORS[dataset]
    path = write_lines(tmp_path / "ratings", [*rating_lines(GOOD_LINES, sep), sep.join(fields)])
    with pytest.raises(DataValidationError) as exc:
        read_ratings(path, sep)
    assert expected in assert_names(exc, path, 3)


def test_ml1m_ratings_reject_tab_separated_line(tmp_path):
    path = write_lines(tmp_path / "ratings.dat", ["1::10::4::881250949", "2\t20\t5\t881250950"])
    with pytest.raises(DataValidationError) as exc:
        read_ratings(path, "::")
    assert "got 1" in assert_names(exc, path, 2)


@pytest.mark.parametrize("dataset", sorted(SEPARATORS))
def test_duplicate_pair_names_both_lines(tmp_path, dataset):
    sep = SEPARATORS[dataset]
    lines = rating_lines([(1, 10, 4), (2, 20, 5), (1, 10, 2)], sep)
    path = write_lines(tmp_path / "ratings", [lines[0], lines[1], "", lines[2]])
    with pytest.raises(DataValidationError) as exc:
        read_ratings(path, sep)
    message = assert_names(exc, path, 4)
    assert "duplicate rating of item 10 by user 1" in message
    assert "first at line 1" in message


def test_same_item_by_different_users_is_not_a_duplicate(tmp_path):
    path = write_lines(tmp_path / "u.data", rating_lines([(1, 10, 4), (2, 10, 4)], "\t"))
    assert len(read_ratings(path, "\t")) == 2


def test_ratings_damaged_text_is_rejected(tmp_path):
    bad = "1\t30\t4\t88125\ufffd".encode()
    path = write_lines(tmp_path / "u.data", [*rating_lines(GOOD_LINES, "\t"), bad])
    with pytest.raises(DataValidationError) as exc:
        read_ratings(path, "\t")
    assert "U+FFFD" in assert_names(exc, path, 3)


def test_ratings_non_ascii_bytes_are_rejected(tmp_path):
    path = write_lines(tmp_path / "u.data", [b"1\t2\t3\t881250949", b"1\t3\t4\t8812\xe9"])
    with pytest.raises(DataValidationError) as exc:
        read_ratings(path, "\t")
    assert "cannot decode as ascii" in assert_names(exc, path, 2)


def test_ratings_control_characters_are_rejected(tmp_path):
    path = write_lines(tmp_path / "u.data", [b"1\t2\t3\t881250949", b"1\t3\x00\t4\t881250949"])
    with pytest.raises(DataValidationError) as exc:
        read_ratings(path, "\t")
    assert "control characters" in assert_names(exc, path, 2)


def test_empty_ratings_file_names_the_file(tmp_path):
    path = write_lines(tmp_path / "u1.test", ["", "  "])
    with pytest.raises(DataValidationError) as exc:
        read_ratings(path, "\t")
    assert "no ratings" in assert_names(exc, path, None)


def test_missing_ratings_file_names_the_file(tmp_path):
    path = tmp_path / "u9.base"
    with pytest.raises(DataValidationError) as exc:
        read_ratings(path, "\t")
    assert "file not found" in assert_names(exc, path, None)


# --- ML-100K catalogue: u.genre, u.item ---------------------------------------------------------


def write_genres(folder: Path, names=GENRES_100K) -> Path:
    return write_lines(folder / "u.genre", [f"{name}|{i}" for i, name in enumerate(names)])


def test_genres_in_index_order(tmp_path):
    path = write_lines(
        tmp_path / "u.genre", [f"{name}|{i}" for i, name in reversed(list(enumerate(GENRES_100K)))]
    )
    assert read_genres_100k(path) == list(GENRES_100K)


def test_genres_wrong_count_names_the_file(tmp_path):
    path = write_genres(tmp_path, GENRES_100K[:-1])
    with pytest.raises(DataValidationError) as exc:
        read_genres_100k(path)
    assert "expected 19 genres, got 18" in assert_names(exc, path, None)


def test_genres_wrong_columns_name_the_line(tmp_path):
    path = write_lines(tmp_path / "u.genre", ["unknown|0", "Action|1|extra"])
    with pytest.raises(DataValidationError) as exc:
        read_genres_100k(path)
    assert "expected 2 columns" in assert_names(exc, path, 2)


def test_movies_100k_titles_years_genres_latin1(tmp_path):
    path = write_lines(
        tmp_path / "u.item", [item_line_100k(*m) for m in MOVIES], encoding="latin-1"
    )
    movies = {m.movie_id: m for m in read_movies_100k(path, list(GENRES_100K))}
    assert list(movies) == [7, 1, 3, 2]  # file order; sorting is preprocessing's job
    assert movies[1].title == "Toy Story" and movies[1].year == 1995
    assert movies[1].genres == ("Animation", "Children's", "Comedy")
    assert movies[3].title == "Misérables, Les"  # latin-1 é decoded, not mangled
    # No year in the title: the release date supplies it.
    assert movies[7].title == "Untitled Festival Cut" and movies[7].year == 1996
    assert movies[2].to_dict() == {
        "movie_id": 2,
        "title": "GoldenEye",
        "year": 1995,
        "genres": ["Action", "Adventure", "Thriller"],
    }


def _bad_item_lines() -> list:
    good = item_line_100k(1, "Toy Story (1995)", "01-Jan-1995", ("Comedy",))
    fields = item_line_100k(2, "GoldenEye (1995)", "01-Jan-1995", ("Action",)).split("|")
    return [
        pytest.param(good, "|".join(fields[:-1]), "expected 24 columns, got 23", id="columns"),
        pytest.param(good, "|".join(["two", *fields[1:]]), "movie id 'two'", id="id"),
        pytest.param(good, "|".join([*fields[:-1], "2"]), "genre flags must be 0 or 1", id="flag"),
        pytest.param(good, good, "movie id 1 appears twice", id="duplicate"),
        pytest.param(
            good,
            item_line_100k(3, DAMAGED_TITLE, "01-Jan-1995", ()).encode(),
            "U+FFFD",
            id="damaged-text",
        ),
    ]


@pytest.mark.parametrize(("first", "second", "expected"), _bad_item_lines())
def test_movies_100k_errors_name_file_and_line(tmp_path, first, second, expected):
    path = write_lines(tmp_path / "u.item", [first, second], encoding="latin-1")
    with pytest.raises(DataValidationError) as exc:
        read_movies_100k(path, list(GENRES_100K))
    assert expected in assert_names(exc, path, 2)


# --- ML-1M catalogue: movies.dat ----------------------------------------------------------------


def test_movies_1m_titles_years_genres_latin1(tmp_path):
    path = write_lines(
        tmp_path / "movies.dat",
        [
            "1::Toy Story (1995)::Animation|Children's|Comedy",
            "3::Misérables, Les (1995)::Drama",
            "9::No Year Given::Comedy",
        ],
        encoding="latin-1",
    )
    movies = read_movies_1m(path)
    assert [m.movie_id for m in movies] == [1, 3, 9]
    assert movies[0].title == "Toy Story" and movies[0].year == 1995
    assert movies[0].genres == ("Animation", "Children's", "Comedy")
    assert movies[1].title == "Misérables, Les"
    assert movies[2].year is None


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        pytest.param("2::Jumanji (1995)", "expected 3 columns, got 2", id="columns"),
        pytest.param("x::Jumanji (1995)::Fantasy", "movie id 'x'", id="id"),
        pytest.param("1::Toy Story again (1995)::Comedy", "movie id 1 appears twice", id="dup"),
        pytest.param(f"3::{DAMAGED_TITLE}::Drama".encode(), "U+FFFD", id="damaged-text"),
        pytest.param(b"3::Mis\xc3\xa9rables::Drama\x0b", "control characters", id="control"),
    ],
)
def test_movies_1m_errors_name_file_and_line(tmp_path, second, expected):
    path = write_lines(tmp_path / "movies.dat", ["1::Toy Story (1995)::Comedy", second])
    with pytest.raises(DataValidationError) as exc:
        read_movies_1m(path)
    assert expected in assert_names(exc, path, 2)


def test_empty_catalogue_names_the_file(tmp_path):
    path = write_lines(tmp_path / "movies.dat", [""])
    with pytest.raises(DataValidationError) as exc:
        read_movies_1m(path)
    assert "no movies" in assert_names(exc, path, None)


# --- users --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "sep"), [("u.user", "|"), ("users.dat", "::")])
def test_user_ids(tmp_path, name, sep):
    path = write_lines(tmp_path / name, [user_line(u, sep) for u in (3, 1, 2)])
    assert read_user_ids(path, sep) == [3, 1, 2]


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        pytest.param(b"2|53|F|t\xe9chnician|94043", "cannot decode as ascii", id="latin-1-byte"),
        pytest.param("2|53|F|técnico|94043".encode(), "cannot decode as ascii", id="utf-8"),
        pytest.param("2|53|F|t\ufffdchnician|94043".encode(), "U+FFFD", id="damaged-text"),
        pytest.param(b"2|53|F|other", "expected 5 columns, got 4", id="columns"),
        pytest.param(b"two|53|F|other|94043", "user id 'two'", id="id"),
        pytest.param(b"1|53|F|other|94043", "user id 1 appears twice", id="duplicate"),
    ],
)
def test_users_errors_name_file_and_line(tmp_path, second, expected):
    path = write_lines(tmp_path / "u.user", [user_line(1, "|"), second])
    with pytest.raises(DataValidationError) as exc:
        read_user_ids(path, "|")
    assert expected in assert_names(exc, path, 2)


# --- ratings against the catalogue --------------------------------------------------------------


def test_catalogue_check_accepts_known_ids(tmp_path):
    path = write_lines(tmp_path / "u1.base", rating_lines(GOOD_LINES, "\t"))
    check_against_catalogue(path, read_ratings(path, "\t"), {10, 20, 30}, {1, 2})


def test_unknown_item_names_first_bad_line(tmp_path):
    path = write_lines(
        tmp_path / "u1.base", rating_lines([*GOOD_LINES, (1, 99, 3), (2, 98, 3)], "\t")
    )
    with pytest.raises(DataValidationError) as exc:
        check_against_catalogue(path, read_ratings(path, "\t"), {10, 20}, {1, 2})
    assert "item 99 is not in the catalogue" in assert_names(exc, path, 3)


def test_unknown_user_names_first_bad_line(tmp_path):
    lines = rating_lines([(1, 10, 4), (7, 20, 5), (8, 10, 1)], "::")
    path = write_lines(tmp_path / "ratings.dat", [lines[0], "", lines[1], lines[2]])
    with pytest.raises(DataValidationError) as exc:
        check_against_catalogue(path, read_ratings(path, "::"), {10, 20}, {1, 2})
    assert "user 7 is not in the user list" in assert_names(exc, path, 3)
