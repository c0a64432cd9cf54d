//! Tests of the consumer state machine.
