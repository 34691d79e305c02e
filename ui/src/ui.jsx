// Small shared pieces of both consoles.
import { useEffect, useState } from 'preact/hooks';

export function Notice({ kind = 'ok', children }) {
  return <div class={`notice ${kind}`} role={kind === 'error' ? 'alert' : 'status'} data-testid={`notice-${kind}`}>{children}</div>;
}

export function Field({ label, children }) {
  return (
    <label class="field">
      <span>{label}</span>
      {children}
    </label>
  );
}

export function Tabs({ tabs, tab, setTab }) {
  return (
    <nav>
      {tabs.map(([id, label]) => (
        <a key={id} href={`#${id}`} class={id === tab ? 'active' : ''} aria-current={id === tab ? 'page' : undefined} data-testid={`tab-${id}`} onClick={() => setTab(id)}>{label}</a>
      ))}
    </nav>
  );
}

/** The tab named by location.hash (#requests), kept in sync with the back button. */
export function useHashTab(initial) {
  const read = () => (location.hash || '').replace(/^#/, '') || initial;
  const [tab, setTab] = useState(read);
  useEffect(() => {
    const on = () => setTab(read());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return [tab, setTab];
}
