// Package compose checks the compose quickstart in deploy/compose: its
// files load and agree with each other, and they run.
package compose
