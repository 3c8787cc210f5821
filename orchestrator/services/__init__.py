"""Cross-cutting services used by the API, the activities and the CLI alike: the send
policy's rules, signed message links, privacy (export and erasure) and the `webhook`
action's signed calls."""
