"""Business rules and state changes. Plain arguments in, models out, domain errors out."""
