"""Every page and every htmx partial through Flask's test client, with plain HTTP too."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from web import db
from web.tables import Feedback, Impression, Rating

HTMX = {"HX-Request": "true"}
# Star Wars, Return of the Jedi, Empire Strikes Back, Toy Story, Twister (ML-100K ids).
PROFILE = {50: 5, 181: 5, 172: 4, 1: 4, 118: 2}


def rate_all(client, ratings=PROFILE):
    for movie, stars in ratings.items():
        response = client.post("/ratings", data={"movie_id": movie, "rating": stars}, headers=HTMX)
        assert response.status_code == 200, response.text


def count(app, table, *where):
    with app.app_context():
        return db.get_session().scalar(select(func.count()).select_from(table).where(*where))


def test_index_is_a_full_page_with_htmx_served_locally(web_client):
    page = web_client.get("/")
    assert page.status_code == 200
    assert "<html" in page.text and 'id="search-results"' in page.text
    assert "/static/vendor/htmx/htmx.min.js" in page.text and "unpkg" not in page.text
    script = web_client.get("/static/vendor/htmx/htmx.min.js")
    assert script.status_code == 200 and b"htmx" in script.data
    assert web_client.get("/static/vendor/htmx/LICENSE").status_code == 200


def test_active_search_partial_and_plain_page(web_client):
    partial = web_client.get("/search?q=star+wars", headers=HTMX)
    assert partial.status_code == 200
    assert partial.text.lstrip().startswith('<section id="search-results"')
    assert "<html" not in partial.text and "Star Wars" in partial.text
    page = web_client.get("/search?q=star+wars")
    assert "<html" in page.text and "Star Wars" in page.text
    filtered = web_client.get("/search?q=star&year=1977&genre=Sci-Fi", headers=HTMX)
    assert "Star Wars" in filtered.text and "Star Trek" not in filtered.text
    assert "No movie matches" in web_client.get("/search?q=zzzqqq", headers=HTMX).text


def test_rating_is_saved_editable_and_removable(web_app, web_client):
    saved = web_client.post("/ratings", data={"movie_id": 50, "rating": 4}, headers=HTMX)
    assert saved.status_code == 200
    assert saved.headers["HX-Trigger"] == "ratings-changed"
    assert 'id="rating-50"' in saved.text and saved.text.count("star filled") == 4
    web_client.post("/ratings", data={"movie_id": 50, "rating": 2}, headers=HTMX)
    assert count(web_app, Rating, Rating.movie_id == 50, Rating.rating == 2) == 1
    profile = web_client.get("/profile")
    assert "Star Wars" in profile.text and 'id="ratings-list"' in profile.text
    removed = web_client.delete("/ratings/50", headers=HTMX)
    assert removed.status_code == 200 and "No ratings yet" in removed.text
    assert count(web_app, Rating) == 0


def test_plain_http_forms_redirect_after_post(web_app, web_client):
    response = web_client.post("/ratings", data={"movie_id": 1, "rating": 5})
    assert response.status_code == 303
    assert count(web_app, Rating, Rating.movie_id == 1) == 1
    response = web_client.post("/ratings/1/delete")
    assert response.status_code == 303 and response.headers["Location"].endswith("/profile")
    assert count(web_app, Rating) == 0


def test_recommendations_page_switch_model_and_more(web_app, web_client):
    rate_all(web_client)
    page = web_client.get("/recommendations")
    assert page.status_code == 200 and "<html" in page.text
    assert page.text.count('class="rec"') == 10
    assert "because you rated" in page.text
    switched = web_client.get("/recommendations?model=hybrid", headers=HTMX)
    assert switched.text.lstrip().startswith('<section id="rec-section"')
    assert 'data-model="hybrid"' in switched.text
    more = web_client.get("/recommendations?model=sae&k=20", headers=HTMX)
    assert more.text.count('class="rec"') == 20
    assert "predicted ★" in more.text  # the SAE predicts ratings
    assert not any(f'data-movie-id="{movie}"' in more.text for movie in PROFILE)  # rated: out
    assert count(web_app, Impression) == 10 + 10 + 20


def test_compare_shows_three_models_side_by_side(web_client):
    rate_all(web_client)
    page = web_client.get("/compare")
    for model in ("sae", "rbm", "hybrid"):
        assert f'id="panel-{model}"' in page.text
    assert page.text.count('class="rec"') == 30
    partial = web_client.get("/compare", headers=HTMX)
    assert partial.text.lstrip().startswith('<section id="compare-panels"')
    assert "cached" in partial.text  # same ratings, same versions: served from the cache


def test_new_user_gets_the_labelled_popularity_fallback(web_client):
    page = web_client.get("/recommendations?model=rbm")
    assert "popularity fallback" in page.text


def test_new_rating_invalidates_the_cached_answer(web_client):
    rate_all(web_client)
    web_client.get("/recommendations?model=sae")
    assert "cached" in web_client.get("/recommendations?model=sae", headers=HTMX).text
    web_client.post("/ratings", data={"movie_id": 100, "rating": 5}, headers=HTMX)
    assert "cached" not in web_client.get("/recommendations?model=sae", headers=HTMX).text


def test_feedback_is_stored_before_the_answer(web_app, web_client):
    rate_all(web_client)
    web_client.get("/recommendations?model=sae")
    response = web_client.post(
        "/feedback", data={"movie_id": 98, "model": "sae", "kind": "up"}, headers=HTMX
    )
    assert response.status_code == 200 and 'data-kind="up"' in response.text
    assert count(web_app, Feedback, Feedback.kind == "up", Feedback.movie_id == 98) == 1
    plain = web_client.post("/feedback", data={"movie_id": 98, "model": "rbm", "kind": "watched"})
    assert plain.status_code == 303
    assert count(web_app, Feedback) == 2


def test_experiment_page_counts_the_arm(web_app, web_client):
    rate_all(web_client)
    page = web_client.get("/recommendations")  # the default model is the user's arm
    arm = "sae" if 'data-model="sae"' in page.text else "rbm"
    web_client.post("/feedback", data={"movie_id": 98, "model": arm, "kind": "watched"})
    table = web_client.get("/experiment", headers=HTMX)
    assert table.text.lstrip().startswith('<section id="experiment-table"')
    row = table.text.split(f'data-arm="{arm}"')[1].split("</tr>")[0]
    assert '<td class="impressions">10</td>' in row and '<td class="clicks">1</td>' in row
    assert "<svg" in web_client.get("/experiment").text


def test_analytics_page_and_live_partial(web_app, web_client, project_home):
    rate_all(web_client)
    web_client.get("/compare")
    web_client.post("/feedback", data={"movie_id": 98, "model": "rbm", "kind": "down"})
    page = web_client.get("/analytics")
    assert page.status_code == 200 and "<svg" in page.text
    assert "No evaluation report" in page.text
    live = web_client.get("/analytics/live", headers=HTMX)
    assert live.text.lstrip().startswith('<section id="analytics-live"')
    assert 'id="kpi-feedback">1<' in live.text
    assert 'id="kpi-recommendations">3<' in live.text
    assert "recommendations.compare" in live.text  # latency table by endpoint


def test_analytics_shows_the_offline_report(web_app_factory, tmp_path):
    report = tmp_path / "evaluation.json"
    report.write_text('{"models": {"sae": {"rmse": 0.95, "ranking": {"precision@10": 0.1}},'
                      ' "rbm": {"precision@10": 0.2}}}')  # fmt: skip
    client = web_app_factory(evaluation_report=report).test_client()
    page = client.get("/analytics").text
    assert "No evaluation report" not in page
    assert "0.9500" in page and "0.2000" in page and "precision@10" in page


def test_model_server_down_page_says_so_and_the_rest_works(web_app_factory):
    from training.serving.processes import free_port

    app = web_app_factory(
        model_backend="torchserve", torchserve_url=f"http://127.0.0.1:{free_port()}",
        model_timeout_s=1.0,
    )  # fmt: skip
    client = app.test_client()
    rate_all(client)  # ratings are stored whatever the model server does
    page = client.get("/compare")
    assert page.status_code == 200
    assert page.text.count("The model server is not answering right now") == 3
    assert count(app, Rating) == len(PROFILE)
    assert client.get("/search?q=toy", headers=HTMX).status_code == 200
    assert "Toy Story" in client.get("/profile").text


@pytest.mark.parametrize(
    ("method", "url", "data", "status", "message"),
    [
        ("post", "/ratings", {"movie_id": 999999, "rating": 3}, 422, "unknown movie id"),
        ("post", "/ratings", {"movie_id": 50, "rating": 6}, 422, "must be from 1 to 5"),
        ("post", "/ratings", {"movie_id": 50, "rating": "x"}, 422, "whole number"),
        ("post", "/ratings", {"rating": 3}, 422, "movie_id"),
        ("post", "/feedback", {"movie_id": 50, "model": "knn", "kind": "up"}, 422, "unknown model"),
        ("post", "/feedback", {"movie_id": 50, "model": "sae", "kind": "love"}, 422, "feedback"),
        ("get", "/recommendations?model=knn", None, 422, "unknown model"),
        ("get", "/recommendations?k=0", None, 422, "k"),
        ("get", "/recommendations?k=500", None, 422, "from 1 to 100"),
        ("get", "/search?q=a&year=abc", None, 422, "year"),
        ("get", "/search?q=a&genre=Nope", None, 422, "unknown genre"),
        ("delete", "/ratings/999999", None, 422, "unknown movie id"),
        ("get", "/no-such-page", None, 404, "was not found"),
    ],
)
def test_bad_form_input_table(web_client, method, url, data, status, message):
    """htmx gets an error fragment (swapped in: see base.html's htmx-config), browsers a page."""
    response = getattr(web_client, method)(url, data=data, headers=HTMX)
    assert response.status_code == status
    assert message in response.text
    assert "<html" not in response.text
    plain = getattr(web_client, method)(url, data=data)
    assert plain.status_code == status and "<html" in plain.text


def test_oversize_form_is_refused(web_client):
    response = web_client.post("/ratings", data={"movie_id": "1" * 100_000, "rating": 3})
    assert response.status_code == 413
    assert "too large" in response.text
