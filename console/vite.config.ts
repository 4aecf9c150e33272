import { defineConfig } from 'vite';

// The server serves the build at /console/ from the binary (server/build.rs embeds dist/).
export default defineConfig({
  base: '/console/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Everything as files of the console's own origin: the Content-Security-Policy allows
    // nothing inline.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 2000,
    sourcemap: false,
  },
});
