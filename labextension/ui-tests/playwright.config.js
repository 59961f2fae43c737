/** Galata's defaults, with Debian's Chromium (no browser download here) and no video. */
const baseConfig = require('@jupyterlab/galata/lib/playwright-config');

module.exports = {
  ...baseConfig,
  timeout: 300000,
  expect: { timeout: 30000 },
  retries: 0,
  workers: 1,
  reporter: [['list'], ['html', { open: 'never' }]],
  use: {
    ...baseConfig.use,
    video: 'off',
    trace: 'off',
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-quic']
    }
  },
  webServer: {
    command: 'jlpm start',
    url: 'http://127.0.0.1:8888/lab',
    timeout: 120000,
    reuseExistingServer: !process.env.CI
  }
};
