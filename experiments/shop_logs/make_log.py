"""shop_sim turned into an invoice-line transaction log with repeat purchases (UCI layout).

``python -m experiments.shop_logs.make_log OUT.csv.gz [--users N --items N --pairs N --seed S]``

What the log has, on top of shop_sim's (user, item) first purchases and their order (each
customer's gaps stretched 5x, to ~10 days):

- **Repeat purchases.** A share ``consumable`` of the items (default 35%) are re-bought: each
  first purchase of such an item is followed by ``Poisson(rebuy_mean)`` more purchases, each
  ``Exp(mean 21 days)`` after the last one, so later periods (a temporal split's test) hold
  both re-purchases and first purchases. Other items are bought once per customer.
- **Invoices.** A customer's lines on one calendar day form one invoice (``InvoiceNo`` 6
  digits), with a quantity ``1 + Poisson(1)`` and the item's unit price.
- **What real logs also hold**: a postage line (``StockCode`` ``POST``) on 20% of invoices,
  a cancellation of 3% of lines (invoice ``C<no>``, negative quantity), 2% guest lines (empty
  ``CustomerID``) and, for 5% of lines, a variant description (lower case), so the title is
  the most frequent description.

The categories are *not* written (a shop log has no taxonomy); ``--truth FILE`` writes
shop_sim's true leaf per ``StockCode`` (json) to score clusters against.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from divrec.data.sources.shop_sim import load_shop_sim

DAY = 86_400


def make_log(
    n_users: int = 1500,
    n_items: int = 1500,
    n_pairs: int = 24_000,
    seed: int = 0,
    consumable: float = 0.35,
    rebuy_mean: float = 1.5,
    stretch: int = 5,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """(invoice lines in UCI Online Retail columns, StockCode -> true leaf path)."""
    ds = load_shop_sim(n_items=n_items, n_users=n_users, n_interactions=n_pairs, seed=seed)
    rng = np.random.default_rng(seed + 1)
    items = ds.items.set_index("item_id")
    first = ds.interactions[["user_id", "item_id", "timestamp"]].copy()
    # shop_sim's first purchases are ~2 days apart; a shop's customers come back over months:
    # each customer's gaps are stretched by ``stretch`` from their first purchase on
    start = first.groupby("user_id")["timestamp"].transform("min")
    first["timestamp"] = start + (first["timestamp"] - start) * stretch
    is_cons = pd.Series(rng.random(len(items)) < consumable, index=items.index)
    n_re = np.where(is_cons[first["item_id"]].to_numpy(), rng.poisson(rebuy_mean, len(first)), 0)
    rep = first.loc[first.index.repeat(n_re)].reset_index(drop=True)
    # k-th re-purchase of a pair: the first time plus the sum of k gaps
    gaps = rng.exponential(21 * DAY, len(rep)).astype(np.int64)
    pair = np.repeat(np.arange(len(first)), n_re)
    rep["timestamp"] = (
        rep["timestamp"].to_numpy() + pd.Series(gaps).groupby(pair).cumsum().to_numpy()
    )
    lines = pd.concat([first, rep], ignore_index=True).sort_values("timestamp", kind="stable")
    lines = lines.reset_index(drop=True)

    day = lines["timestamp"] // DAY
    inv_key = lines["user_id"] + "-" + day.astype(str)
    invoice = 536_365 + pd.factorize(inv_key, sort=False)[0]
    price = items["price"].astype(float)[lines["item_id"]].to_numpy()
    out = pd.DataFrame(
        {
            "InvoiceNo": invoice.astype(str),
            "StockCode": lines["item_id"].to_numpy(),
            "Description": items["title"][lines["item_id"]].to_numpy(),
            "Quantity": 1 + rng.poisson(1.0, len(lines)),
            "ts": lines["timestamp"].to_numpy(),
            "UnitPrice": price,
            "CustomerID": lines["user_id"].to_numpy(),
        }
    )
    variant = rng.random(len(out)) < 0.05
    out.loc[variant, "Description"] = out.loc[variant, "Description"].str.lower()
    inv = out.drop_duplicates("InvoiceNo")
    post = inv[rng.random(len(inv)) < 0.2].assign(
        StockCode="POST", Description="POSTAGE", Quantity=1, UnitPrice=18.0
    )
    cancel = out[rng.random(len(out)) < 0.03].copy()
    cancel["InvoiceNo"] = "C" + cancel["InvoiceNo"]
    cancel["Quantity"] = -cancel["Quantity"]
    cancel["ts"] = cancel["ts"] + 3600
    guest = out[rng.random(len(out)) < 0.02].assign(CustomerID="")
    log = pd.concat([out, post, cancel, guest], ignore_index=True).sort_values("ts", kind="stable")
    log["InvoiceDate"] = pd.to_datetime(log.pop("ts"), unit="s").dt.strftime("%m/%d/%Y %H:%M")
    cols = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice"]
    truth = {
        i: cats[0] for i, cats in zip(ds.items["item_id"], ds.items["categories"], strict=True)
    }
    return log[[*cols, "CustomerID"]].reset_index(drop=True), truth


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="the log to write (.csv or .csv.gz)")
    p.add_argument("--users", type=int, default=1500)
    p.add_argument("--items", type=int, default=1500)
    p.add_argument("--pairs", type=int, default=24_000, help="first purchases (user, item)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truth", type=Path, help="write StockCode -> true leaf (json) here")
    a = p.parse_args()
    log, truth = make_log(a.users, a.items, a.pairs, a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    log.to_csv(a.out, index=False)
    if a.truth:
        a.truth.write_text(json.dumps(truth))
    n_inv = log["InvoiceNo"].nunique()
    print(f"{a.out}: {len(log)} lines, {n_inv} invoices, {log['StockCode'].nunique()} codes")


if __name__ == "__main__":
    main()
