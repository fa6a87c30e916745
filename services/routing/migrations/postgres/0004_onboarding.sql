-- Onboarding confirmations (seed 004, "Подтверждение подключения к ПОС"): an organization's
-- head or coordinator confirms that the staff are trained and that the cabinet is ready. The
-- first confirmation of a step stands (who and when); once both steps are confirmed the
-- organization is connected. Organizations connected by the directory import or the seed have
-- no rows here: they were onboarded outside the platform.
CREATE TABLE onboarding_confirmations (
    organization_id TEXT   NOT NULL,
    step            TEXT   NOT NULL,   -- 'training_done' or 'cabinet_ready'
    confirmed_by    TEXT   NOT NULL,   -- the subject of the head or coordinator
    confirmed_at    BIGINT NOT NULL,
    PRIMARY KEY (organization_id, step)
);
