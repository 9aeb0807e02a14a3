-- Re-diagnoses of raised alerts (`alert-update/1`): each message keeps the diagnosis it carried, so an
-- alert's diagnosis history (raise, then every update) is read from `alert_messages`, where every alert
-- message is recorded once by (gateway_id, seq); NULL for a clear and for a raise without a diagnosis.
-- `alert_diagnoses` keeps the latest edge diagnosis of each alert.
ALTER TABLE alert_messages ADD COLUMN IF NOT EXISTS diagnosis jsonb;
