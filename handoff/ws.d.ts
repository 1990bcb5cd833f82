export * from '../dist/handoff-ws'
