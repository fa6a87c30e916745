//! notify against real PostgreSQL and SQLite and a real SMTP server (aiosmtpd) on loopback.

mod crash;
mod delivery;
mod helpers;
mod letters;
mod life;
mod links;
mod mailer;
mod outage;
mod scope;
mod settings;
mod stream;
