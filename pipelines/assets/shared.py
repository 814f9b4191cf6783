"""What several asset modules share: the asset groups, and how many rows a metadata table shows.

An asset whose metadata uses :data:`SHOWN_ROWS` lists this module in its code version.
"""

# The groups the Dagster UI shows the assets in.
DATA_GROUP = "data"
TOKENS_GROUP = "tokens"
MODEL_GROUP = "model"

SHOWN_ROWS = 50  # rows of a metadata table; lineage.json holds the whole list
