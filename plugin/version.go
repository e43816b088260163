package edgepass

// Version is this plugin's release. Edges report it in their heartbeats
// (`edgepass edges`, the console), so an operator sees which Traefik still
// runs an old plugin during a rollout. docs/release.md: set it to the tag
// being released, then to the next "-dev".
const Version = "v0.2.0-dev"
