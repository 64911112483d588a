"""The canonical id fields, in array column order: the names of FeatureSchema's three field groups
(cascbench.data). Kept apart from data.py, which imports torch, so that the RecFlow schema and the
dataset configs load without it."""

CONTEXT_FIELDS = ("weekday", "hour", "minute", "user_id", "device_id", "gender", "age", "province")
ITEM_FIELDS = ("video_id", "author_id", "category_level_two", "category_level_one", "upload_type")
CANDIDATE_FIELDS = ("upload_weekday", "upload_hour", "upload_minute")
