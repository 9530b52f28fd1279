"""MovieLens ``tags_as_text``: item texts hold only tags of training (user, item) pairs."""

from __future__ import annotations

import pandas as pd
from hydra.utils import instantiate


def _release(root):
    folder = root / "ml-latest-small"
    folder.mkdir(parents=True)
    ratings = [(u, m, 4.0, 1000 + 10 * u + m) for u in (1, 2, 3) for m in (1, 2, 3)]
    pd.DataFrame(ratings, columns=["userId", "movieId", "rating", "timestamp"]).to_csv(
        folder / "ratings.csv", index=False
    )
    movies = [(1, "Toy Story (1995)", "Animation"), (2, "Heat (1995)", "Crime"),
              (3, "Casino (1995)", "Drama")]  # fmt: skip
    pd.DataFrame(movies, columns=["movieId", "title", "genres"]).to_csv(
        folder / "movies.csv", index=False
    )
    tags = [
        (1, 1, "pixar"),  # user 1 trains on movie 1
        (3, 1, "secretending"),  # user 3's (3, 1) is a test pair
        (2, 1, "neverrated"),  # user 2 rated movie 1 only in test as well
        (1, 2, "heist"),  # train pair
        (3, 2, "heist"),  # test pair: the tag still shows through user 1's
    ]
    pd.DataFrame([(*t, 5) for t in tags], columns=["userId", "movieId", "tag", "timestamp"]).to_csv(
        folder / "tags.csv", index=False
    )
    split = {
        "train": [(1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3)],
        "test": [(2, 1), (3, 1), (3, 2)],
    }
    files = {}
    for part, pairs in split.items():
        files[part] = root / f"{part}.csv"
        pd.DataFrame(pairs, columns=["user_id", "item_id"]).to_csv(files[part], index=False)
    return files


def test_tags_of_held_out_pairs_never_reach_item_texts(compose_source, tmp_path):
    files = _release(tmp_path / "ml")
    cfg = compose_source(
        "data=movielens",
        f"data.root={tmp_path / 'ml'}",
        "data.download=false",
        "+data.tags_as_text=true",
        "data.preprocess.min_rating=null",
        "data.preprocess.min_user_history=0",
        "data.text.item_template='{title}. Tags: {tags}.'",
        "data.split.method=given",
        f"data.split.train_file={files['train']}",
        f"data.split.test_file={files['test']}",
    )
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup()
    text = {i: dm.catalogue.texts[dm.catalogue.index[i]] for i in ("1", "2", "3")}
    assert text["1"] == "Toy Story (1995). Tags: pixar."
    assert text["2"] == "Heat (1995). Tags: heist."
    assert text["3"] == "Casino (1995). Tags: ."
