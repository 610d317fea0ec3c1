CREATE TABLE api_keys (
	id VARCHAR(32) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	key_hash VARCHAR(64) NOT NULL, 
	key_prefix VARCHAR(16) NOT NULL, 
	credits BIGINT, 
	rate_limit INTEGER, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	revoked_at TIMESTAMP WITH TIME ZONE, 
	last_used_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id), 
	CONSTRAINT credits_not_negative CHECK (credits IS NULL OR credits >= 0), 
	UNIQUE (key_hash)
);
CREATE TABLE key_usage (
	key_id VARCHAR(32) NOT NULL, 
	action VARCHAR(64) NOT NULL, 
	request_source VARCHAR(32) NOT NULL, 
	requests BIGINT NOT NULL, 
	credits_spent BIGINT NOT NULL, 
	last_used_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (key_id, action, request_source)
);
CREATE TABLE rate_windows (
	key_id VARCHAR(32) NOT NULL, 
	"window" BIGINT NOT NULL, 
	count INTEGER NOT NULL, 
	PRIMARY KEY (key_id, "window")
);
CREATE TABLE watches (
	id VARCHAR(40) NOT NULL, 
	provider VARCHAR(32) NOT NULL, 
	cred_hash VARCHAR(64) NOT NULL, 
	credentials_enc TEXT, 
	handle VARCHAR(200) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	last_poll_at FLOAT, 
	next_poll_at FLOAT NOT NULL, 
	last_error TEXT, 
	last_error_kind VARCHAR(32), 
	resume_cursor TEXT, 
	lease_owner VARCHAR(80), 
	lease_expires_at FLOAT, 
	credits_spent BIGINT NOT NULL, 
	pages_read BIGINT NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_watches_target UNIQUE (provider, cred_hash, handle)
);
CREATE INDEX ix_watches_due ON watches (next_poll_at);
CREATE TABLE events (
	seq BIGSERIAL NOT NULL, 
	id VARCHAR(40) NOT NULL, 
	watch_id VARCHAR(40) NOT NULL, 
	follower_key VARCHAR(220) NOT NULL, 
	payload TEXT NOT NULL, 
	detected_at FLOAT NOT NULL, 
	baseline BOOLEAN NOT NULL, 
	PRIMARY KEY (seq), 
	CONSTRAINT uq_events_follower UNIQUE (watch_id, follower_key), 
	UNIQUE (id), 
	FOREIGN KEY(watch_id) REFERENCES watches (id) ON DELETE CASCADE
);
CREATE TABLE seen_followers (
	watch_id VARCHAR(40) NOT NULL, 
	follower_key VARCHAR(220) NOT NULL, 
	PRIMARY KEY (watch_id, follower_key), 
	FOREIGN KEY(watch_id) REFERENCES watches (id) ON DELETE CASCADE
);
CREATE TABLE subscriptions (
	id VARCHAR(40) NOT NULL, 
	watch_id VARCHAR(40) NOT NULL, 
	key_id VARCHAR(40) NOT NULL, 
	kind VARCHAR(8) NOT NULL, 
	event VARCHAR(40) NOT NULL, 
	target_url TEXT, 
	secret VARCHAR(80), 
	request_source VARCHAR(32) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	last_error TEXT, 
	credits_spent BIGINT NOT NULL, 
	created_at FLOAT NOT NULL, 
	last_called_at FLOAT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(watch_id) REFERENCES watches (id) ON DELETE CASCADE
);
CREATE INDEX ix_subscriptions_key ON subscriptions (key_id);
CREATE INDEX ix_subscriptions_watch ON subscriptions (watch_id);
CREATE TABLE deliveries (
	id BIGSERIAL NOT NULL, 
	subscription_id VARCHAR(40) NOT NULL, 
	event_id VARCHAR(40) NOT NULL, 
	status VARCHAR(12) NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at FLOAT NOT NULL, 
	last_status INTEGER, 
	last_error TEXT, 
	delivered_at FLOAT, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_deliveries_once UNIQUE (subscription_id, event_id), 
	FOREIGN KEY(subscription_id) REFERENCES subscriptions (id) ON DELETE CASCADE, 
	FOREIGN KEY(event_id) REFERENCES events (id) ON DELETE CASCADE
);
CREATE INDEX ix_deliveries_due ON deliveries (status, next_attempt_at);
CREATE TABLE delivery_attempts (
	id BIGSERIAL NOT NULL, 
	subscription_id VARCHAR(40) NOT NULL, 
	event_id VARCHAR(40) NOT NULL, 
	attempted_at FLOAT NOT NULL, 
	status_code INTEGER, 
	error TEXT, 
	duration_ms INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(subscription_id) REFERENCES subscriptions (id) ON DELETE CASCADE
);
CREATE INDEX ix_delivery_attempts_sub ON delivery_attempts (subscription_id, id);
