-- Widget visitors (§12) may leave an email in the pre-chat form.
ALTER TABLE conversations ADD COLUMN customer_email TEXT;
