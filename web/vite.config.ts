import { defineConfig } from "vite";

// `npm run build` writes dist/, which the gateway's web listener serves; files under
// dist/assets/ are named after their content hash and cached for a year.
export default defineConfig({
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: true,
    target: "es2022",
  },
});
