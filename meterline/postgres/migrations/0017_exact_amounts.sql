-- Granted consume amounts are exact decimals, as every quantity is (meterline/values.py: at most
-- 15 significant digits and 6 decimals). float8 held them as binary fractions; each is converted
-- through its 15-digit text, which is exact for every amount the rule allows.
ALTER TABLE entitlement_answers ALTER COLUMN amount TYPE numeric USING amount::numeric;
