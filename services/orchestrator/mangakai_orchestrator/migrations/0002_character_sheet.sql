-- The character sheet drawn once per job before its panels (an Image, serialized),
-- and each panel version's un-lettered art beside its lettered image.

ALTER TABLE jobs ADD COLUMN character_sheet bytea;
ALTER TABLE panel_versions ADD COLUMN art bytea;
