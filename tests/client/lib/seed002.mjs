// The point-of-sale sync client's own code (its `SyncClient`), as its authors
// wrote it but for `confirmSync`, which they leave to the integrator: here
// it POSTs /sync/confirm with the pulled cursor and records each completed sync.

import { io } from "socket.io-client";

// The client logs as it goes; keep the test output readable.
const console = { log() {}, error() {} };

/** The POS client's SyncClient, verbatim but for `confirmSync`, which its code leaves open. */
export class SyncClient {
  constructor(backendUrl, apiKey) {
    this.backendUrl = backendUrl;
    this.apiKey = apiKey;
    this.socket = null;
    this.isProcessing = false;
  }

  connect() {
    this.socket = io(`${this.backendUrl}/sync`, {
      auth: {
        apiKey: this.apiKey
      }
    });

    this.setupEventListeners();
  }

  setupEventListeners() {
    this.socket.on('connect', () => {
      console.log('✅ Conectado al servidor de sincronización');
    });

    this.socket.on('changes:pending', async () => {
      console.log('📨 Cambios pendientes detectados');

      if (!this.isProcessing) {
        this.isProcessing = true;
        await this.syncChanges();
        this.isProcessing = false;
      }
    });

    this.socket.on('connect_error', (error) => {
      console.error('❌ Error de conexión:', error.message);
    });
  }

  async syncChanges() {
    try {
      const response = await fetch(`${this.backendUrl}/sync/pull-changes`, {
        headers: {
          'Authorization': `Bearer ${this.apiKey}`
        }
      });

      const data = await response.json();
      console.log('Datos sincronizados:', data);

      // Procesar datos...

      // Confirmar sincronización
      await this.confirmSync(data);

    } catch (error) {
      console.error('Error en sincronización:', error);
    }
  }

  async confirmSync(data) {
    const response = await fetch(`${this.backendUrl}/sync/confirm`, {
      method: 'POST',
      headers: { 'Authorization': `Bearer ${this.apiKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ cursor: data.cursor }),
    });
    const confirmed = await response.json();
    // What the tests watch: each sync the client completed.
    this.synced = this.synced ?? [];
    this.synced.push({ data, confirmed });
    this.onSynced?.({ data, confirmed });
  }

  disconnect() {
    if (this.socket) {
      this.socket.disconnect();
    }
  }
}

/** The next sync the client completes. */
export function nextSync(client, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the client did not sync within ${timeout} ms`)), timeout);
    client.onSynced = (sync) => {
      clearTimeout(timer);
      client.onSynced = null;
      resolve(sync);
    };
  });
}
