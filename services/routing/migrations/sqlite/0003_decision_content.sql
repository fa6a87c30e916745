-- What the first routing of an appeal carried, so that a reroute (a redirect or a return to
-- coordination) can announce the appeal as completely as its first appeal.routed did: the
-- deadline's start, the applicant to notify, the text the new addressee reads. The text is the
-- public one (passport and SNILS masked by intake). Rows of appeals routed before this column
-- existed keep the defaults: 0 and '' mean unknown, and a reroute then leaves them unset.
ALTER TABLE routing_decisions ADD COLUMN registered_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE routing_decisions ADD COLUMN source BIGINT NOT NULL DEFAULT 0;
ALTER TABLE routing_decisions ADD COLUMN category_id TEXT NOT NULL DEFAULT '';
ALTER TABLE routing_decisions ADD COLUMN subcategory_id TEXT NOT NULL DEFAULT '';
ALTER TABLE routing_decisions ADD COLUMN public_text TEXT NOT NULL DEFAULT '';
ALTER TABLE routing_decisions ADD COLUMN problem_address TEXT NOT NULL DEFAULT '';
-- JSON {full_name, email, phone, account_id}; '' when unknown.
ALTER TABLE routing_decisions ADD COLUMN applicant TEXT NOT NULL DEFAULT '';
