//! Tests of pull requests, the waiting queue and status replies.
