export * from './dist/handoff'
