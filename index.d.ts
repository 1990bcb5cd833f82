// Types of the package entry point; the declarations are generated from ts/ into dist/.
export * from './dist/index'
