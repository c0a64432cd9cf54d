//! The nats-server configuration file format (see the parser module docs).
