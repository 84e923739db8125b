# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # MovieLens as the pipeline sees it
#
# Everything here is read from the prepared data (`data/preprocessed/<dataset>/`, written by
# `movierec data prepare`) through `training.data.preprocess.load_prepared`, the loader the
# models train from. `MOVIEREC_HOME` picks another project root (the tests point it at a
# temporary one); unset, it is this checkout.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from training.config import Paths, load_params
from training.data import encoding
from training.data.preprocess import load_prepared, summary
from training.metrics.beyond_accuracy import (
    ITEM_BUCKET_EDGES,
    USER_BUCKET_EDGES,
    bucket_masks,
    item_popularity,
)

paths = Paths()
params = load_params()
data = load_prepared(paths.prepared(params.data.dataset))
print(f"project root: {paths.root}")
pd.Series(summary(data.metadata), name="value").to_frame()

# %% [markdown]
# ## Ratings
# The 1-5 stars of the train and test splits, and how sparse the user × item matrix is.

# %%
stars = range(1, 6)
histogram = pd.DataFrame(
    {
        split: [int((matrix == star).sum()) for star in stars]
        for split, matrix in (("train", data.train), ("test", data.test))
    },
    index=pd.Index(stars, name="stars"),
)
ax = histogram.plot.bar(figsize=(7, 3.5), title="Ratings per star value", rot=0)
ax.set_ylabel("ratings")
print(f"density: {data.metadata['density']:.2%} of the user × item matrix is rated")
display(histogram)

# %% [markdown]
# ## Long tail of item popularity and user activity
# Popularity is `training.metrics.beyond_accuracy.item_popularity`, the count the novelty and
# median-popularity figures of the evaluation use.

# %%
popularity = item_popularity(data.train).sort(descending=True).values.numpy()
activity = (data.train > 0).sum(dim=1).numpy()
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
left.plot(range(1, len(popularity) + 1), popularity)
left.set_yscale("log")
left.set(title="Item popularity (train)", xlabel="item rank", ylabel="users who rated it")
right.hist(activity, bins=50)
right.set(title="User activity (train)", xlabel="ratings per user", ylabel="users")
fig.tight_layout()
head = max(1, len(popularity) // 10)
print(
    f"the top 10% of items ({head}) hold {popularity[:head].sum() / popularity.sum():.1%} of the "
    f"train ratings; {int((popularity == 0).sum())} items have no train rating"
)

# %% [markdown]
# ## Genres and years
# From `movies.json`, the catalogue the web app and the serving artifacts show.

# %%
movies = pd.DataFrame(data.movies)
genres = movies.explode("genres")["genres"].value_counts()
years = movies["year"].dropna().astype(int)
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
genres.sort_values().plot.barh(ax=left, title="Films per genre")
left.set_xlabel("films")
right.hist(years, bins=range(int(years.min()), int(years.max()) + 2, 2))
right.set(title="Films per release year", xlabel="year", ylabel="films")
fig.tight_layout()

# %% [markdown]
# ## The split's cold start
# Test users bucketed by their number of train ratings, and test ratings by their item's number
# of train ratings: the buckets (`bucket_masks` with `USER_BUCKET_EDGES` / `ITEM_BUCKET_EDGES`)
# of the evaluation's cold-start tables.

# %%
test_users = (data.test > 0).any(dim=1)
user_rows = [
    {"bucket": label, "test users": int((members & test_users).sum())}
    for label, members in bucket_masks((data.train > 0).sum(dim=1), USER_BUCKET_EDGES)
]
test_items = data.test > 0
item_rows = [
    {
        "bucket": label,
        "items": int((members & test_items.any(dim=0)).sum()),
        "test ratings": int(test_items[:, members].sum()),
    }
    for label, members in bucket_masks(item_popularity(data.train), ITEM_BUCKET_EDGES)
]
pd.concat(
    {
        "users by train ratings": pd.DataFrame(user_rows).set_index("bucket"),
        "items by train ratings": pd.DataFrame(item_rows).set_index("bucket"),
    },
    axis=1,
)

# %% [markdown]
# ## What the encodings keep
# The SAE reads the raw stars; the RBM reads either the *liked* encoding (rating ≥
# `data.rbm_threshold` → 1, below → 0, unrated → -1) or the *implicit* one (rated → 1), through
# `training.data.encoding`.

# %%
liked = encoding.prepare_rbm_data(data.train, params.data.rbm_threshold)
implicit = encoding.prepare_implicit_data(data.train)
rated = int((data.train > 0).sum())
pd.DataFrame(
    {
        "ones": [int((liked == 1).sum()), int((implicit == 1).sum())],
        "zeros": [int((liked == 0).sum()), int((implicit == 0).sum())],
        "unknown (-1)": [int((liked == -1).sum()), 0],
        "share of ratings kept as 1": [
            float((liked == 1).sum()) / rated,
            float((implicit == 1).sum()) / rated,
        ],
    },
    index=[f"liked (>= {params.data.rbm_threshold})", "implicit"],
)
